# A NixOS VM with Docker and PostgreSQL: load the image, start it as Coolify would, wait until
# Docker reports it healthy, exercise /health and the Socket.IO endpoint /_event, then stop it
# with SIGTERM and require a clean exit.
{
  lib,
  testers,
  contract,
  image,
}:
let
  port = toString contract.http.port;
  ref = "${image.imageName}:${image.imageTag}";
  database = "working";
in
testers.runNixOSTest {
  name = "working-image";

  nodes.machine =
    { pkgs, ... }:
    {
      virtualisation = {
        docker.enable = true;
        memorySize = 2048;
        diskSize = 4096;
      };

      services.postgresql = {
        enable = true;
        ensureDatabases = [ database ];
        ensureUsers = [
          {
            name = database;
            ensureDBOwnership = true;
          }
        ];
        # The container uses the host network and connects over TCP to 127.0.0.1.
        enableTCPIP = true;
        authentication = lib.mkForce ''
          local all all trust
          host all all 127.0.0.1/32 trust
          host all all ::1/128 trust
        '';
      };

      environment.systemPackages = [ pkgs.curl ];
    };

  testScript = ''
    import json

    machine.wait_for_unit("docker.service")
    machine.wait_for_unit("postgresql.service")
    # ensureDatabases/ensureUsers run in a separate unit on recent NixOS.
    machine.wait_until_succeeds("sudo -u postgres psql -d ${database} -c 'select 1'")

    machine.succeed("${image} | docker load")
    machine.succeed(
        "docker run -d --name app --network host "
        "-e DATABASE_URL=postgresql://${database}@127.0.0.1:5432/${database} "
        "${ref}"
    )

    machine.wait_until_succeeds(
        "test \"$(docker inspect -f '{{.State.Health.Status}}' app)\" = healthy",
        timeout=${toString (contract.healthcheck.start_period_s * 4)},
    )

    health = json.loads(machine.succeed("curl -fsS http://127.0.0.1:${port}${contract.http.health_path}"))
    machine.log(f"/health: {health}")

    # Engine.IO handshake over long-polling: the backend answers on the same port.
    handshake = machine.succeed(
        "curl -fsS 'http://127.0.0.1:${port}/_event/?EIO=4&transport=polling'"
    )
    assert handshake.startswith("0{") and '"sid"' in handshake, handshake

    # The app runs as the contract's user, not root.
    user = machine.succeed("docker inspect -f '{{.Config.User}}' app").strip()
    assert user == "${toString contract.image.uid}:${toString contract.image.gid}", user

    machine.succeed("docker kill --signal=${contract.shutdown.stop_signal} app")
    status = machine.succeed("timeout ${toString contract.shutdown.grace_period_s} docker wait app").strip()
    machine.log(machine.succeed("docker logs app 2>&1"))
    assert status == "${toString contract.exit_codes.ok}", f"exit status {status}"
  '';
}
