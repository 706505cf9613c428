# delivery-operator: common tasks. `make demo` and `make test` are the two entry points.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/delivery-operator/target

.PHONY: demo test toolchain sandbox sandbox-down build crds lint unit fmt

## Bring up the local control plane and AWS emulator, run the operator, apply the example and
## watch it reach Ready.
demo:
	scripts/demo

## The whole suite, as CI runs it: formatting, lints, CRD freshness, unit, integration and
## end-to-end tests against a real kube-apiserver and moto.
test:
	scripts/test

## Build (once) kube-apiserver, kubectl, etcd, helm and the moto virtualenv into ~/.cache.
toolchain:
	scripts/toolchain

sandbox:
	scripts/sandbox up
	@echo 'eval "$$(scripts/sandbox env)"'

sandbox-down:
	scripts/sandbox down

## The one build make test and make demo share (static, debug profile, test binaries included).
build:
	scripts/build

## Regenerate crds/ (and the chart's copy, which templates/crd.yaml installs) from the Rust types.
crds:
	"$$(scripts/build)" crd --output-dir crds
	cp crds/deliverypipelines.yaml crds/deliverypolicies.yaml charts/delivery-operator/files/crds/

fmt:
	cargo fmt

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

unit:
	scripts/build --run --lib --bins
