# A NixOS VM with Docker and PostgreSQL: load the image, start it as Coolify would, wait until
# Docker reports it healthy, then run .github/scripts/smoke.py against it (health with the
# commit, a WebSocket event round trip on /_event, non-root process, SIGTERM -> exit 0).
{
  lib,
  testers,
  contract,
  image,
  revision,
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

      # python3 runs the smoke test (standard library only).
      environment.systemPackages = [ pkgs.python3 ];
    };

  testScript = ''
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

    # The same smoke test the suite runs against a local `working serve` and the deploy
    # verification runs against Coolify: /health with this commit, a WebSocket on /_event with
    # one Reflex event round trip, the container's process not root, `docker stop` -> exit 0.
    status, output = machine.execute(
        "python3 ${../.github/scripts/smoke.py} http://127.0.0.1:${port}"
        " --commit ${revision} --service ${contract.service} --container app"
        " --grace ${toString contract.shutdown.grace_period_s} 2>&1"
    )
    machine.log(output)
    machine.log(machine.succeed("docker logs app 2>&1"))
    assert status == 0, output

    # The image's own user, as the runtime sees it (smoke.py checked the process itself).
    user = machine.succeed("docker inspect -f '{{.Config.User}}' app").strip()
    assert user == "${toString contract.image.uid}:${toString contract.image.gid}", user
  '';
}
