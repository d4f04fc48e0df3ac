# The OCI image config as plain data, derived from the runtime contract.
#
# Deliberately free of nixpkgs: tests/test_nix.py evaluates this function with placeholder
# store paths (`nix-instantiate --eval --strict --json`) and compares the result with what the
# Python side reads from working/runtime/contract.toml, so the two cannot drift.
{
  contract,
  project,
  venv,
  frontend,
  revision,
}:
let
  python = "${venv}/bin/python";
  run = [
    python
    "-m"
    contract.entrypoint.module
  ];
  # Docker wants healthcheck durations in nanoseconds.
  seconds = s: s * 1000000000;

  env = {
    FRONTEND_DIR = "${frontend}";
    DATA_DIR = contract.image.data_dir;
    PYTHONUNBUFFERED = "1";
    GIT_COMMIT = revision;
    APP_VERSION = project.version;
    REFLEX_TELEMETRY_ENABLED = "false";
    REFLEX_CHECK_LATEST_VERSION = "false";
    # dockerTools.caCertificates puts the bundle here (and in the Debian/Fedora locations).
    SSL_CERT_FILE = "/etc/ssl/certs/ca-bundle.crt";
    # For processes the app starts; there is no shell and nothing else on it.
    PATH = "${venv}/bin";
    # Reflex resolves ~ at import time. The passwd entry says the same, but a runtime that
    # starts the image with another uid (--user) would otherwise leave ~ unresolvable.
    HOME = contract.image.data_dir;
  };
in
{
  Entrypoint = run;
  Cmd = [ contract.entrypoint.default_command ];
  User = "${toString contract.image.uid}:${toString contract.image.gid}";
  WorkingDir = contract.image.workdir;
  Env = builtins.attrValues (builtins.mapAttrs (name: value: "${name}=${value}") env);
  ExposedPorts = {
    "${toString contract.http.port}/tcp" = { };
  };
  StopSignal = contract.shutdown.stop_signal;
  # Exec form: the image checks itself with its own entrypoint (no shell, no curl).
  Healthcheck = {
    Test = [ "CMD" ] ++ run ++ contract.healthcheck.command;
    Interval = seconds contract.healthcheck.interval_s;
    Timeout = seconds contract.healthcheck.timeout_s;
    StartPeriod = seconds contract.healthcheck.start_period_s;
    Retries = contract.healthcheck.retries;
  };
  Labels = {
    "org.opencontainers.image.title" = contract.service;
    "org.opencontainers.image.description" = project.description or "";
    "org.opencontainers.image.version" = project.version;
    "org.opencontainers.image.revision" = revision;
    "org.opencontainers.image.licenses" = project.license;
  }
  // (
    if project ? urls.Source then
      { "org.opencontainers.image.source" = project.urls.Source; }
    else
      { }
  );
}
