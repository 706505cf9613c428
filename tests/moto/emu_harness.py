"""The harness in front of moto: a WSGI layer that sees every request before moto does.

- identifies each request as AWS would (service, operation, account, access key);
- validates it against the service model (emu_validation) and answers a violation with the
  service's own validation error, in its protocol;
- records it (`GET /_harness/requests?access_key=X`, `DELETE` clears), independently of what the
  client believes it sent;
- injects faults chosen by a test (`POST /_harness/faults`, `GET` lists, `DELETE` clears);
- speaks Smithy RPC v2 CBOR (`POST /service/{Service}/operation/{Operation}`, `smithy-protocol:
  rpc-v2-cbor`), the protocol the AWS SDKs use for CloudWatch, which moto does not: the request
  is translated to the service's JSON protocol for moto (and validated, recorded, faulted as
  such), the answer back to CBOR;
- serves the control endpoints the launcher registers (`register`):
  - `POST /_harness/pipeline-executions` creates or updates a CodePipeline execution (the
    emulator runs none) with its stage and action statuses, and sends the EventBridge events
    CodePipeline would send; `GET ?account=&region=&pipeline=` lists a pipeline's executions.
    Body: {"pipeline": NAME, "account"?, "region"?, "executionId"?, "status"?, "statusSummary"?,
    "stages"?: {STAGE: STATUS | {"status": STATUS, "actions"?: {ACTION: {"status", "summary"?,
    "externalExecutionId"?, "externalExecutionUrl"?, "errorDetails"?, "percentComplete"?}}}},
    "trigger"?: {"triggerType", "triggerDetail"}, "sourceRevisions"?: [...], "events"?: bool}
    (launcher.pipeline_executions_endpoint has the details);
  - `GET /_harness/event-deliveries?rule=&account=&targetArn=` lists the target invocations
    EventBridge made or refused (and why), `DELETE` clears.

  - `POST /_harness/runs` arms a pipeline: its executions then run (emu_executor.py), every
    call authorized by emu_authorize.py; `GET ?pipeline=` lists the runs, their steps and every
    authorization; `POST /_harness/scan-findings` gives a repository's scan findings;
    `POST /_harness/source-push` pushes a commit to a connection or CodeCommit source.

Control endpoints live under /_harness/, next to moto's own /moto-api/.
"""

from __future__ import annotations

import io
import itertools
import json
import random
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import emu_validation
from emu_policy import UnsupportedPolicy

DEFAULT_ACCOUNT = "123456789012"
CREDENTIAL = re.compile(r"Credential=([A-Za-z0-9]+)/")

# The request being served on this thread (the policy evaluator reads the caller from it).
CURRENT = threading.local()

# moto serves one request at a time. Its backends read and write plain dicts from whichever
# request thread werkzeug runs, and iterating one while another request adds to it fails with
# HTTP 500 ("dictionary changed size during iteration": CreateRole, GetRole, CreateSubnet and
# GetResources were seen failing so with hundreds of pipelines created together), which AWS never
# answers. moto holds the interpreter lock while it works anyway, so this costs little; the
# harness's own waits (injected latency) happen outside it.
MOTO = threading.RLock()

# Role-session access key -> the long-term key it was (transitively) assumed from, so that the
# record of one client includes the calls it made in other accounts through role sessions.
ORIGINS: dict[str, str] = {}


def session_issued(caller_key: str, session_key: str) -> None:
    ORIGINS[session_key] = ORIGINS.get(caller_key, caller_key)


def log(message: str) -> None:
    print(f"harness: {message}", file=sys.stderr, flush=True)


class Identity:
    def __init__(self) -> None:
        self.service_name: str | None = None  # botocore name, e.g. "kms"
        self.service_id = ""  # botocore serviceId, e.g. "KMS" (the Rust SDK's metadata name)
        self.operation = ""
        self.operation_model = None
        self.protocol = ""
        self.params: dict[str, Any] | None = None
        self.parse_error: str | None = None
        self.access_key = ""
        self.account = DEFAULT_ACCOUNT
        self.region = "us-east-1"
        self.method = ""
        self.path = ""
        self.query = ""
        self.headers: dict[str, str] = {}


def _access_key(environ: dict[str, Any]) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = CREDENTIAL.search(auth)
    if m:
        return m.group(1)
    query = parse_qs(environ.get("QUERY_STRING", ""))
    credential = (query.get("X-Amz-Credential") or [""])[0]
    return credential.split("/")[0] if credential else ""


def _region(environ: dict[str, Any]) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=[^/]+/\d+/([^/]+)/", auth)
    return m.group(1) if m else "us-east-1"


class Harness:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.seq = itertools.count(1)
        # Further control endpoints, by path: handler(method, query, body) -> (status, payload).
        self.endpoints: dict[str, Any] = {}
        # Authorization of a request before moto serves it: authorize(ident) -> None or
        # (code, message, status) (the pipeline runs' authorizer, emu_executor).
        self.authorize = None

    def register(self, path: str, handler) -> None:
        """Adds a control endpoint under /_harness/ (the launcher's emulated state: pipeline
        executions, EventBridge deliveries)."""
        self.endpoints[path] = handler

    # ---------------------------------------------------------------- identification

    def identify(self, environ: dict[str, Any], body: bytes) -> Identity:
        from moto.core.parse import PROTOCOL_PARSERS
        from moto.core.request import Request, determine_request_protocol
        from moto.core.responses import boto3_service_name
        from moto.core.routing import get_service_router
        from moto.core.utils import get_service_model
        from moto.iam.models import get_account_id_from

        ident = Identity()
        ident.method = environ.get("REQUEST_METHOD", "")
        ident.path = environ.get("PATH_INFO", "")
        ident.query = environ.get("QUERY_STRING", "")
        ident.headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_") and isinstance(v, str)
        }
        ident.access_key = _access_key(environ)
        ident.region = _region(environ)
        if ident.access_key:
            ident.account = get_account_id_from(ident.access_key)

        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        try:
            backend = self.app.get_application(env).service
        except Exception as e:  # noqa: BLE001
            ident.parse_error = f"no backend: {e}"
            return ident
        name = boto3_service_name.get(backend, backend)
        try:
            service_model = get_service_model(name)
        except Exception:  # noqa: BLE001  (moto-internal backends have no AWS model)
            return ident
        ident.service_name = name
        ident.service_id = service_model.metadata.get("serviceId", name)
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        request = Request(env)
        try:
            operation, uri_params = get_service_router(name).match(request)
        except Exception as e:  # noqa: BLE001
            ident.parse_error = f"no operation matched: {type(e).__name__}"
            return ident
        ident.operation = operation.name
        ident.operation_model = operation
        try:
            ident.protocol = determine_request_protocol(service_model, request.content_type)
        except NotImplementedError:
            ident.protocol = service_model.protocol
        try:
            parser = PROTOCOL_PARSERS[ident.protocol](operation)
            ident.params = parser.parse(
                {
                    "method": request.method,
                    "values": request.values,
                    "headers": request.headers,
                    "body": request.data,
                    "url_path": request.path,
                    "url_params": uri_params,
                }
            )
        except Exception as e:  # noqa: BLE001
            ident.parse_error = f"{type(e).__name__}: {e}"
        # moto's JSON parser reads a body that is not JSON as no members at all: AWS refuses it.
        if ident.params is not None and ident.protocol in ("json", "rest-json") and body.strip():
            try:
                json.loads(body)
            except ValueError as e:
                ident.params = None
                ident.parse_error = f"the body is not JSON: {e}"
        return ident

    # ---------------------------------------------------------------- responses

    def error(self, start_response, ident: Identity, code: str, message: str, status: int, sender: bool = True):
        request_id = str(uuid.uuid4())
        protocol = ident.protocol or "rest-xml"
        headers = [("x-amzn-RequestId", request_id)]
        if protocol in ("json", "rest-json"):
            body = json.dumps({"__type": code, "message": message}).encode()
            content_type = "application/x-amz-json-1.1" if protocol == "json" else "application/json"
            headers += [("Content-Type", content_type), ("x-amzn-ErrorType", code)]
            model = emu_validation.botocore_model(ident.service_name) if ident.service_name else None
            if model is not None and model.metadata.get("awsQueryCompatible") is not None:
                headers.append(("x-amzn-query-error", f"{code};{'Sender' if sender else 'Receiver'}"))
        elif protocol == "query":
            model = emu_validation.botocore_model(ident.service_name) if ident.service_name else None
            namespace = (model.metadata.get("xmlNamespace") if model is not None else None) or ""
            body = (
                f'<ErrorResponse xmlns="{escape(namespace)}"><Error>'
                f"<Type>{'Sender' if sender else 'Receiver'}</Type><Code>{escape(code)}</Code>"
                f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId>"
                "</ErrorResponse>"
            ).encode()
            headers.append(("Content-Type", "text/xml"))
        elif protocol == "ec2":
            body = (
                f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
                f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
            ).encode()
            headers.append(("Content-Type", "text/xml"))
        else:  # rest-xml (S3)
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
                f"<RequestId>{request_id}</RequestId></Error>"
            ).encode()
            headers += [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        if ident.method == "HEAD":
            body = b""
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_reason(status)}", headers)
        return [body]

    # ---------------------------------------------------------------- faults

    def take_fault(self, ident: Identity, body: bytes) -> dict[str, Any] | None:
        haystack = None
        with self.lock:
            for fault in list(self.faults):
                if fault.get("service") and fault["service"] != ident.service_id:
                    continue
                if fault.get("operation") and fault["operation"] != ident.operation:
                    continue
                if fault.get("account") and fault["account"] != ident.account:
                    continue
                if fault.get("access_key") and fault["access_key"] != ident.access_key:
                    continue
                # A long-term key and every role session assumed from it (the operator's calls in
                # every account it reaches).
                if fault.get("origin_key") and fault["origin_key"] != ORIGINS.get(ident.access_key, ident.access_key):
                    continue
                if fault.get("resource"):
                    if haystack is None:
                        from urllib.parse import unquote

                        haystack = unquote(ident.path) + "?" + unquote(ident.query) + "\n" + body.decode("utf-8", "replace")
                    if fault["resource"] not in haystack:
                        continue
                if fault.get("fraction") is not None and random.random() >= float(fault["fraction"]):
                    continue
                if fault.get("count") is not None:
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self.faults.remove(fault)
                fault["hits"] = fault.get("hits", 0) + 1
                return dict(fault)
        return None

    # ---------------------------------------------------------------- WSGI

    def moto(self, environ: dict[str, Any], start_response):
        """moto's answer, one request at a time (see MOTO), read whole inside the lock."""
        with MOTO:
            answer = self.app(environ, start_response)
            try:
                return [b"".join(answer)]
            finally:
                if hasattr(answer, "close"):
                    answer.close()

    def __call__(self, environ: dict[str, Any], start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_harness/"):
            return self.control(environ, start_response)
        if path.startswith("/moto-api") or path == "/favicon.ico":
            return self.moto(environ, start_response)
        if environ.get("HTTP_SMITHY_PROTOCOL") == "rpc-v2-cbor" or CBOR_PATH.match(path):
            return self.serve_cbor(environ, start_response)
        return self.serve(environ, start_response)

    # ---------------------------------------------------------------- Smithy RPC v2 CBOR

    def serve_cbor(self, environ: dict[str, Any], start_response):
        """A request in the Smithy RPC v2 CBOR protocol (what the AWS SDKs speak to CloudWatch, whose
        model lists `smithy-rpc-v2-cbor` first; moto serves only its JSON and query protocols):
        translated to the service's JSON protocol for moto, and moto's answer translated back to
        CBOR, as AWS answers it (content type `application/cbor`, header `smithy-protocol:
        rpc-v2-cbor`, errors as a map with `__type` and `message`)."""
        body = _buffer(environ)
        try:
            operation_model = self.cbor_operation(environ)
            translated = cbor_to_json_request(operation_model, body)
        except Exception as e:  # noqa: BLE001
            log(f"could not translate a CBOR request {environ.get('PATH_INFO')}: {type(e).__name__}: {e}")
            data = cbor_encode_error("SerializationException", f"could not read the CBOR request: {e}")
            start_response("400 Bad Request", cbor_headers([("x-amzn-RequestId", str(uuid.uuid4()))], data))
            return [data]
        environ["PATH_INFO"] = "/"
        environ["CONTENT_TYPE"] = translated["headers"]["Content-Type"]
        environ["HTTP_X_AMZ_TARGET"] = translated["headers"]["X-Amz-Target"]
        environ["CONTENT_LENGTH"] = str(len(translated["body"]))
        environ["wsgi.input"] = io.BytesIO(translated["body"])
        environ.pop("HTTP_SMITHY_PROTOCOL", None)
        captured: dict[str, Any] = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda chunk: captured.setdefault("written", []).append(chunk)

        chunks = self.serve(environ, capture)
        try:
            payload = b"".join(captured.get("written", [])) + b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        status = captured.get("status", "500 Internal Server Error")
        code = int(status.split(" ", 1)[0])
        kept = [(k, v) for k, v in captured.get("headers", []) if k.lower() not in ("content-type", "content-length")]
        try:
            data = json_to_cbor_response(operation_model, code, payload)
        except Exception as e:  # noqa: BLE001
            log(f"could not translate moto's answer to CBOR ({status}): {type(e).__name__}: {e}: {payload[:300]!r}")
            code, status = 500, "500 Internal Server Error"
            data = cbor_encode_error("InternalFailure", f"test harness: could not encode the answer as CBOR: {e}")
        start_response(status, cbor_headers(kept, data))
        return [data]

    def cbor_operation(self, environ: dict[str, Any]):
        """The operation a CBOR request names (`POST /service/{ServiceName}/operation/{Operation}`),
        in the model of the service the request is signed for."""
        from moto.core.responses import boto3_service_name

        match = CBOR_PATH.match(environ.get("PATH_INFO", ""))
        if match is None:
            raise ValueError("the path is not /service/{ServiceName}/operation/{Operation}")
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(b"")
        backend = self.app.get_application(env).service
        model = emu_validation.botocore_model(boto3_service_name.get(backend, backend))
        if "smithy-rpc-v2-cbor" not in (model.metadata.get("protocols") or [model.protocol]):
            raise ValueError(f"{model.service_name} does not speak smithy-rpc-v2-cbor")
        return model.operation_model(match.group(2))

    def serve(self, environ: dict[str, Any], start_response):
        path = environ.get("PATH_INFO", "")
        body = _buffer(environ)
        try:
            ident = self.identify(environ, body)
        except Exception:  # noqa: BLE001
            log("could not identify request:\n" + traceback.format_exc())
            ident = Identity()
            ident.method = environ.get("REQUEST_METHOD", "")
            ident.path = path
        record = {
            "seq": next(self.seq),
            "time": time.time(),
            "service": ident.service_id,
            "operation": ident.operation,
            "account": ident.account,
            "access_key": ident.access_key,
            "origin_key": ORIGINS.get(ident.access_key, ident.access_key),
            "region": ident.region,
            "method": ident.method,
            "path": ident.path,
            "status": 0,
            "injected": False,
            "rejected": None,
            "dropped": False,
            "validated": ident.params is not None,
        }
        with self.lock:
            self.records.append(record)
        if ident.service_name and ident.params is None:
            # AWS parses every request before acting: one it cannot read is refused, never
            # served unchecked (the harness used to pass it on to moto unvalidated).
            code = unparsable_code(ident)
            log(f"refused, not parsable ({ident.parse_error}): {ident.service_id} {ident.operation} {ident.method} {ident.path} -> {code}")
            record.update(status=400, rejected=code)
            return self.error(
                start_response,
                ident,
                code,
                f"The request could not be parsed as {ident.service_id} {ident.operation or 'any operation'}: {ident.parse_error}",
                400,
            )

        fault = self.take_fault(ident, body)
        # A fault after apply: moto serves the request (the write happens), then the caller gets
        # the fault instead of the reply (a reply lost, a 500 after commit, a reset connection).
        after_apply = fault if fault is not None and fault.get("after_apply") else None
        if fault is not None and after_apply is None:
            if fault.get("latency_ms"):
                time.sleep(float(fault["latency_ms"]) / 1000.0)
            if fault.get("drop_connection") or fault.get("error_code"):
                record["injected"] = True
                return self.answer_fault(environ, start_response, ident, record, fault, "fault", 400)

        if ident.params is not None:
            violations = emu_validation.validate(ident.service_name, ident.operation, ident.params)
            if violations:
                code, status, message = self.validation_error(ident, violations)
                record.update(status=status, rejected=message)
                log(
                    f"REJECTED {ident.service_id}:{ident.operation} from {ident.access_key or '-'} "
                    f"(account {ident.account}) as AWS would: {code}: {message}"
                )
                return self.error(start_response, ident, code, message, status)

        def recording_start_response(status, headers, exc_info=None):
            record["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        CURRENT.ident = ident
        CURRENT.cross_account_authorized = False
        try:
            if self.authorize is not None and ident.params is not None:
                denial = self.authorize(ident)
                if denial is not None:
                    code, message, status = denial
                    record.update(status=status, rejected=message, denied=True)
                    log(f"DENIED {ident.service_id}:{ident.operation} from {ident.access_key}: {message}")
                    return self.error(start_response, ident, code, message, status)
            if after_apply is not None:
                return self.apply_then_fail(environ, start_response, ident, record, after_apply)
            return self.moto(environ, recording_start_response)
        except UnsupportedPolicy as e:
            log(f"ERROR: unsupported policy while serving {ident.service_id}:{ident.operation}: {e}")
            record["status"] = 500
            return self.error(start_response, ident, "InternalFailure", f"test harness: {e}", 500, sender=False)
        finally:
            CURRENT.ident = None
            CURRENT.cross_account_authorized = False

    def apply_then_fail(self, environ, start_response, ident: Identity, record: dict, fault: dict):
        applied = {}

        def swallow(status, headers, exc_info=None):
            applied["status"] = int(status.split(" ", 1)[0])
            return lambda data: None

        answer = self.moto(environ, swallow)
        try:
            b"".join(answer)
        finally:
            if hasattr(answer, "close"):
                answer.close()
        record.update(injected=True, applied=applied.get("status"))
        return self.answer_fault(environ, start_response, ident, record, fault, f"fault after apply ({applied.get('status')})", 500)

    def answer_fault(self, environ, start_response, ident: Identity, record: dict, fault: dict, what: str, default_status: int):
        """The fault's answer instead of moto's: a dropped connection, or its AWS error."""
        if fault.get("drop_connection"):
            record["dropped"] = True
            log(f"{what}: dropping the connection of {ident.service_id}:{ident.operation}")
            return _drop(environ, start_response)
        status = int(fault.get("http_status") or default_status)
        code = fault["error_code"]
        if ident.service_id == "S3" and code in ("Throttling", "ThrottlingException"):
            # S3 throttles with 503 SlowDown ("Please reduce your request rate"), not with the
            # ThrottlingException of the JSON and query services; a 400 to a HEAD request would
            # carry no code at all.
            code, status = "SlowDown", 503
        record["status"] = status
        log(f"{what}: {ident.service_id}:{ident.operation} -> {code} ({status})")
        return self.error(
            start_response,
            ident,
            code,
            fault.get("message") or f"Injected by the test harness ({what}): {code}",
            status,
            sender=status < 500,
        )

    def validation_error(self, ident: Identity, violations) -> tuple[str, int, str]:
        message = emu_validation.message(violations)
        if ident.service_name == "s3":
            # S3 answers schema violations of an XML body with MalformedXML, and bad header or
            # query values with InvalidArgument (Amazon S3 API Reference, "Error responses").
            payload = (ident.operation_model.input_shape.serialization or {}).get("payload") if ident.operation_model else None
            in_body = payload and any(v.path.split(".")[0] == payload[:1].lower() + payload[1:] for v in violations)
            return ("MalformedXML" if in_body else "InvalidArgument"), 400, message
        if ident.service_name == "ec2" and all(v.missing for v in violations):
            return "MissingParameter", 400, message
        return emu_validation.error_code(ident.service_name), 400, message

    # ---------------------------------------------------------------- control endpoints

    def control(self, environ: dict[str, Any], start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        body = _buffer(environ)

        def reply(status: int, payload: Any):
            data = json.dumps(payload).encode()
            start_response(f"{status} {_reason(status)}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]

        if path in self.endpoints:
            try:
                status, payload = self.endpoints[path](method, query, body)
            except Exception as e:  # noqa: BLE001
                log(f"control endpoint {method} {path} failed:\n" + traceback.format_exc())
                status, payload = 500, {"error": f"{type(e).__name__}: {e}"}
            return reply(status, payload)

        def selected(item: dict[str, Any]) -> bool:
            return all(str(item.get(k)) == v for k, v in query.items() if k in ("access_key", "origin_key", "account", "service", "operation", "id"))

        with self.lock:
            if path == "/_harness/requests":
                if method == "GET":
                    return reply(200, [r for r in self.records if selected(r)])
                if method == "DELETE":
                    self.records = [r for r in self.records if not selected(r)]
                    return reply(200, {"ok": True})
            if path == "/_harness/faults":
                if method == "GET":
                    return reply(200, [f for f in self.faults if selected(f)])
                if method == "DELETE":
                    self.faults = [f for f in self.faults if not selected(f)]
                    return reply(200, {"ok": True})
                if method == "POST":
                    try:
                        fault = json.loads(body or b"{}")
                    except ValueError as e:
                        return reply(400, {"error": f"fault is not JSON: {e}"})
                    known = {"service", "operation", "account", "access_key", "origin_key", "resource", "error_code", "http_status", "message", "count", "fraction", "latency_ms", "drop_connection", "after_apply"}
                    unknown = set(fault) - known
                    if unknown:
                        return reply(400, {"error": f"unknown fault fields {sorted(unknown)}"})
                    if not (fault.get("error_code") or fault.get("latency_ms") or fault.get("drop_connection")):
                        return reply(400, {"error": "a fault needs error_code, latency_ms or drop_connection"})
                    if fault.get("after_apply") and not (fault.get("error_code") or fault.get("drop_connection")):
                        return reply(400, {"error": "after_apply needs error_code or drop_connection: what the caller gets instead of the reply"})
                    fault["id"] = str(uuid.uuid4())
                    fault["hits"] = 0
                    self.faults.append(fault)
                    log(f"fault added: {fault}")
                    return reply(200, fault)
        return reply(404, {"error": f"no harness endpoint {method} {path}"})


def _buffer(environ: dict[str, Any]) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > 0:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    if environ.get("wsgi.input_terminated") and "CONTENT_LENGTH" not in environ:
        environ["CONTENT_LENGTH"] = str(len(body))
    return body


def unparsable_code(ident) -> str:
    """The error AWS answers a request it cannot read with, by protocol: an unknown operation, or
    a body or query string that does not parse."""
    protocol = ident.protocol or ""
    if ident.operation is None:
        return "InvalidAction" if protocol in ("query", "ec2") else "UnknownOperationException"
    if protocol in ("query", "ec2"):
        return "MalformedQueryString"
    if protocol == "rest-xml":
        return "MalformedXML"
    return "SerializationException"


def _drop(environ: dict[str, Any], start_response):
    """Closes the connection without a response, as a network failure would."""
    sock = environ.get("werkzeug.socket")
    start_response("500 Internal Server Error", [("Content-Length", "0")])
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return []


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# ---------------------------------------------------------------- Smithy RPC v2 CBOR helpers

CBOR_PATH = re.compile(r"^/service/([^/]+)/operation/([^/]+)$")


def _cbor_serializer():
    """botocore's CBOR encoder, with timestamps as tag 1 over epoch seconds with milliseconds (the
    Smithy RPC v2 CBOR timestamp format)."""
    import struct

    from botocore.serialize import RpcV2CBORSerializer

    class Encoder(RpcV2CBORSerializer):
        def _serialize_type_timestamp(self, serialized, value, shape, key):
            from botocore.utils import parse_to_aware_datetime

            seconds = round(parse_to_aware_datetime(value).timestamp(), 3)
            serialized.extend(self._get_initial_byte(self.TAG_MAJOR_TYPE, 1))
            serialized.extend(self._get_initial_byte(self.FLOAT_AND_SIMPLE_MAJOR_TYPE, 27) + struct.pack(">d", seconds))

    return Encoder()


def _cbor_decode(body: bytes) -> Any:
    from botocore.parsers import RpcV2CBORParser

    parser = RpcV2CBORParser()
    return parser.parse_data_item(parser.get_peekable_stream_from_bytes(body))


def _known_members(shape, value: Any) -> Any:
    """The value with members its shape does not model dropped (botocore's JSON encoder refuses
    them; AWS ignores them)."""
    if shape is None:
        return value
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _known_members(shape.members[k], v) for k, v in value.items() if k in shape.members and v is not None}
    if shape.type_name == "list" and isinstance(value, list):
        return [_known_members(shape.member, v) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _known_members(shape.value, v) for k, v in value.items()}
    return value


def cbor_to_json_request(operation_model, body: bytes) -> dict[str, Any]:
    """A CBOR request body as the service's JSON-protocol request (body and headers)."""
    from botocore.serialize import JSONSerializer

    params = _cbor_decode(body) if body else {}
    if not isinstance(params, dict):
        raise ValueError("the request body is not a CBOR map")
    params = _known_members(operation_model.input_shape, params)
    return JSONSerializer().serialize_to_request(params, operation_model)


def json_to_cbor_response(operation_model, status: int, payload: bytes) -> bytes:
    """moto's JSON answer as the CBOR body AWS sends: the output shape encoded as a CBOR map (an
    operation without output has an empty body), an error as a map of `__type` and `message`."""
    from botocore.parsers import create_parser

    text = payload.decode("utf-8", "replace").strip()
    if status >= 300:
        try:
            error = json.loads(text) if text else {}
        except ValueError:
            error = {}
        error = error if isinstance(error, dict) else {}
        code = error.get("__type") or error.get("code") or ("InternalFailure" if status >= 500 else str(status))
        message = error.get("message") or error.get("Message") or text[:500]
        return cbor_encode_error(code, message)
    shape = operation_model.output_shape
    if shape is None:
        return b""
    parsed = create_parser("json").parse({"status_code": status, "headers": {}, "body": payload or b"{}"}, shape)
    parsed.pop("ResponseMetadata", None)
    out = bytearray()
    _cbor_serializer()._serialize_data_item(out, parsed, shape)
    return bytes(out)


def cbor_encode_error(code: str, message: str) -> bytes:
    from botocore.model import Shape

    string = Shape("String", {"type": "string"})
    encoder = _cbor_serializer()
    out = bytearray()
    out.extend(encoder._get_initial_byte(encoder.MAP_MAJOR_TYPE, 2))
    for item in ("__type", code, "message", message):
        encoder._serialize_type_string(out, str(item), string, None)
    return bytes(out)


def cbor_headers(headers: list[tuple[str, str]], data: bytes) -> list[tuple[str, str]]:
    return list(headers) + [
        ("Content-Type", "application/cbor"),
        ("smithy-protocol", "rpc-v2-cbor"),
        ("Content-Length", str(len(data))),
    ]
