# `nix flake check`: the test suite in the sandbox, lint, the built image against the contract,
# and the image running in a NixOS VM.
{
  lib,
  runCommand,
  testers,
  python3,
  postgresql,
  redis,
  contract,
  testEnv,
  nodejs,
  frontend,
  image,
  revision,
}:
let
  # The whole flake source (tests included); the app itself is also installed in testEnv.
  root = ../.;
in
{
  # Tests that need a browser or the network cannot run in the sandbox, the Nix tests need a
  # Nix inside it, the privileged ones (namespaces, setpriv) need root and the docker ones an
  # engine: all are deselected by marker. PostgreSQL and Redis come from nixpkgs, on PATH for
  # the fixtures; the servers under test serve the frontend export this flake builds.
  pytest =
    runCommand "working-pytest"
      {
        # Node decompresses the export's .br files in the store-path tests (as it made them).
        nativeBuildInputs = [
          testEnv
          nodejs
          postgresql
          redis
        ];
        env = {
          REFLEX_TELEMETRY_ENABLED = "false";
          REFLEX_CHECK_LATEST_VERSION = "false";
          WORKING_TEST_FRONTEND = "${frontend}";
        };
      }
      ''
        cp -r ${root} source
        chmod -R u+w source
        cd source
        export HOME=$(mktemp -d)
        python -m pytest -p no:cacheprovider -m "not browser and not network and not nix and not privileged and not docker"
        touch $out
      '';

  # The ruff that uv.lock pins (in the dev group, so in testEnv), not nixpkgs' ruff: another
  # version has other rules and other formatting, and CI and `uv run ruff` use this one.
  ruff = runCommand "working-ruff" { nativeBuildInputs = [ testEnv ]; } ''
    cd ${root}
    ruff check --no-cache .
    ruff format --no-cache --check .
    touch $out
  '';

  # The image as it will be pushed: stream it, then read its config and every layer.
  image-contract = runCommand "working-image-contract" { nativeBuildInputs = [ python3 ]; } ''
    ${image} > image.tar
    python3 ${../tests/nix/image_contract.py} image.tar ${../working/runtime/contract.toml} ${../pyproject.toml}
    touch $out
  '';

  vm = import ./vm-test.nix {
    inherit
      lib
      testers
      contract
      image
      revision
      ;
  };
}
