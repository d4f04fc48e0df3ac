# `nix run .#push -- REGISTRY/NAME TAG [TAG...]`
#
# Streams the image straight to a registry (no Docker daemon), pushes the first tag, copies it
# registry-side to the other tags (the layers are already there), and prints the digest.
# Credentials come from REGISTRY_USER / REGISTRY_TOKEN and go to a temporary auth file through
# stdin, never onto a command line.
{
  writeShellApplication,
  skopeo,
  image,
}:
writeShellApplication {
  name = "push";
  runtimeInputs = [ skopeo ];
  text = ''
    if [ "$#" -lt 2 ]; then
      echo "usage: nix run .#push -- REGISTRY/NAME TAG [TAG...]" >&2
      exit 2
    fi
    repository=$1
    shift
    : "''${REGISTRY_USER:?set REGISTRY_USER}"
    : "''${REGISTRY_TOKEN:?set REGISTRY_TOKEN}"

    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    auth=$work/auth.json
    registry=''${repository%%/*}

    printf '%s' "$REGISTRY_TOKEN" |
      skopeo login --authfile "$auth" --username "$REGISTRY_USER" --password-stdin "$registry"

    first=$1
    shift
    # skopeo buffers the stream to a temporary file itself; the policy check is for pulls of
    # signed images and has nothing to verify for an image built here.
    ${image} | skopeo --insecure-policy copy \
      --dest-authfile "$auth" \
      --digestfile "$work/digest" \
      docker-archive:/dev/stdin "docker://$repository:$first"

    for tag in "$@"; do
      skopeo --insecure-policy copy \
        --src-authfile "$auth" --dest-authfile "$auth" \
        "docker://$repository:$first" "docker://$repository:$tag"
    done

    digest=$(cat "$work/digest")
    echo "pushed $repository:$first''${*:+ (and $*)}"
    echo "$repository@$digest"
  '';
}
