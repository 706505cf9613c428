#!/usr/bin/env bash
# The pipeline's build stage: builds the container image, pushes it to ECR and writes the
# artifacts the deploy stages read.
#
# Embedded verbatim in the build project's inline buildspec (src/groups/projects/desired.rs);
# tests/stages runs this same file. Inputs are environment variables:
#   REPOSITORY_URI   ECR repository URI, <account>.dkr.ecr.<region>.amazonaws.com/<name>
#   AWS_REGION       region of the ECR login (CodeBuild sets it)
#   CONTAINER_NAME   container name in the ECS task definition, for imagedefinitions.json
#   DOCKERFILE       path of the Dockerfile, relative to the source directory
#   BUILD_CONTEXT    docker build context, relative to the source directory
#   TAG_LATEST       true: also tag and push :latest; false when the repository's tags are all
#                    immutable (a second :latest push would be refused)
#   CODEBUILD_RESOLVED_SOURCE_VERSION  commit ID or S3 object version ID; may be empty
#   CODEBUILD_BUILD_NUMBER             names the image when there is no source version
# Writes, in the current directory: imagedefinitions.json (the ECS deploy action's input) and
# image-tag (the tag alone, exported as IMAGE_TAG by the buildspec for the scan stage).
set -euo pipefail

fail() {
  echo "build: $*" >&2
  exit 1
}

for name in REPOSITORY_URI AWS_REGION CONTAINER_NAME DOCKERFILE BUILD_CONTEXT TAG_LATEST \
  CODEBUILD_BUILD_NUMBER; do
  [[ -n "${!name:-}" ]] || fail "environment variable $name is required"
done
[[ "$TAG_LATEST" == true || "$TAG_LATEST" == false ]] ||
  fail "TAG_LATEST must be true or false, not '$TAG_LATEST'"
[[ "$REPOSITORY_URI" == */* ]] ||
  fail "REPOSITORY_URI must be <registry>/<repository>, not '$REPOSITORY_URI'"
source_version="${CODEBUILD_RESOLVED_SOURCE_VERSION:-}"

# The image tag names the source the image was built from. A tag is
# [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}: a commit ID is shortened as git does; an S3 object version
# ID may hold any character, so the others become '-'.
if [[ "$source_version" =~ ^[0-9a-f]{40}$ ]]; then
  image_tag="${source_version:0:8}"
elif [[ -n "$source_version" ]]; then
  image_tag="${source_version//[^A-Za-z0-9_.-]/-}"
  if [[ "$image_tag" == [.-]* ]]; then
    image_tag="_${image_tag:1}"
  fi
  image_tag="${image_tag:0:128}"
else
  image_tag="build-$CODEBUILD_BUILD_NUMBER"
fi

registry="${REPOSITORY_URI%%/*}"
image="$REPOSITORY_URI:$image_tag"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
refs=("$image")
if [[ "$TAG_LATEST" == true ]]; then
  refs+=("$REPOSITORY_URI:latest")
fi
tag_options=()
for ref in "${refs[@]}"; do
  tag_options+=(--tag "$ref")
done

echo "build: logging in to $registry"
aws ecr get-login-password --region "$AWS_REGION" |
  docker login --username AWS --password-stdin "$registry"

write_artifacts() {
  # JSON from a JSON library: a container name may hold quotes or backslashes.
  IMAGE_URI="$image" python3 -c '
import json, os, sys
json.dump([{"name": os.environ["CONTAINER_NAME"], "imageUri": os.environ["IMAGE_URI"]}], sys.stdout)
print()
' > imagedefinitions.json
  printf '%s\n' "$image_tag" > image-tag
}

# A re-run of a source version already built (a retry, "Release change", the restart after a
# pipeline update) reuses its image: tags are immutable, and the image is that source's.
repository="${REPOSITORY_URI#*/}"
lookup_errors="$(mktemp)"
if found="$(aws ecr describe-images --region "$AWS_REGION" --repository-name "$repository" \
  --image-ids "imageTag=$image_tag" --query 'imageDetails[0].imageDigest' --output text \
  2> "$lookup_errors")"; then
  rm -f "$lookup_errors"
  write_artifacts
  echo "build: $image is already in the repository ($found): reusing it"
  exit 0
fi
grep -q ImageNotFoundException "$lookup_errors" ||
  fail "could not look up $image: $(cat "$lookup_errors")"
rm -f "$lookup_errors"

echo "build: building $image from $DOCKERFILE in $BUILD_CONTEXT"
docker build \
  --file "$DOCKERFILE" \
  "${tag_options[@]}" \
  --build-arg "BUILD_DATE=$build_date" \
  --build-arg "VCS_REF=$source_version" \
  --label "org.opencontainers.image.created=$build_date" \
  --label "org.opencontainers.image.revision=$source_version" \
  "$BUILD_CONTEXT"

for ref in "${refs[@]}"; do
  echo "build: pushing $ref"
  docker push "$ref"
done

write_artifacts
echo "build: pushed $image; wrote imagedefinitions.json and image-tag"
