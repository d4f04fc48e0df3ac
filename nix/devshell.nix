# `nix develop`: the toolchain the image is built with, plus the services the tests start.
# No ruff here: `uv sync` installs the version uv.lock pins (`uv run ruff`), the one CI and
# checks.ruff run.
{
  mkShell,
  python,
  nodejs,
  uv,
  postgresql,
  redis,
  skopeo,
}:
mkShell {
  packages = [
    python
    uv
    nodejs
    postgresql
    redis
    skopeo
  ];

  env = {
    # uv builds .venv with the pinned Nix Python and never downloads another one.
    UV_PYTHON = python.interpreter;
    UV_PYTHON_DOWNLOADS = "never";
    REFLEX_TELEMETRY_ENABLED = "false";
    REFLEX_CHECK_LATEST_VERSION = "false";
  };

  shellHook = ''
    # nixpkgs' Python setup hooks export PYTHONPATH; it would leak into uv's venv.
    unset PYTHONPATH
  '';
}
