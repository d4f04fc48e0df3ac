# The layered OCI image.
#
# streamLayeredImage rather than buildLayeredImage: the result is a small script that writes the
# image tarball to stdout, so the (large) tarball never lands in the Nix store; `docker load`,
# skopeo and the checks read the stream. With the default epoch `created`/`mtime`, the same
# commit gives the same layers and the same image digest.
{
  lib,
  dockerTools,
  fakeNss,
  contract,
  project,
  venv,
  frontend,
  revision,
  tag,
}:
let
  inherit (contract) image;

  # Layer paths are relative to the image root.
  relative = lib.removePrefix "/";

  # /etc/passwd and /etc/group with the non-root app user, so the uid has a name and a home.
  # Its shell field names /sbin/nologin, which the image does not hold, on purpose: nothing in
  # the image reads the field (no login, su or sshd; `docker exec` runs its command directly),
  # and anything that tried would fail to exec it, which is what nologin does. fakeNss's own
  # root and nobody name /bin/sh, absent too ("/bin/sh is fine to not exist", its header).
  # checks.image-contract refuses a real shell there.
  nss = fakeNss.override {
    extraPasswdLines = [
      "${image.user}:x:${toString image.uid}:${toString image.gid}:${image.user}:${image.data_dir}:/sbin/nologin"
    ];
    extraGroupLines = [ "${image.group}:x:${toString image.gid}:" ];
  };
in
dockerTools.streamLayeredImage {
  name = contract.service;
  inherit tag;

  # Only files for the image root. The venv and the frontend export are not symlinked into / :
  # they reach the image as the closure of the paths that `config` names.
  # No shell, no coreutils, no Node, no curl.
  contents = [
    nss
    dockerTools.caCertificates
  ];

  # Runs unprivileged in the customisation layer, whose mode bits are kept.
  extraCommands = ''
    mkdir -p -m 1777 ${relative image.tmp_dir}
    mkdir -p ${relative image.data_dir} ${relative image.workdir}
  '';

  # Ownership needs fakeroot: the data directory belongs to the app user, everything else to root.
  fakeRootCommands = ''
    chown ${toString image.uid}:${toString image.gid} ${relative image.data_dir}
  '';

  config = import ./image-config.nix {
    inherit
      contract
      project
      venv
      frontend
      revision
      ;
  };
}
