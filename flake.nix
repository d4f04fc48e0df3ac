{
  description = "working: a Reflex app, its Python env from uv.lock, and a layered OCI image";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

    pyproject-nix = {
      url = "github:pyproject-nix/pyproject.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    uv2nix = {
      url = "github:pyproject-nix/uv2nix";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    pyproject-build-systems = {
      url = "github:pyproject-nix/build-system-pkgs";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.uv2nix.follows = "uv2nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      pyproject-nix,
      uv2nix,
      pyproject-build-systems,
    }:
    let
      inherit (nixpkgs) lib;

      # The image (and everything that builds it) is Linux-only; the dev shell works on Apple
      # silicon too. Not x86_64-darwin: nixpkgs 26.05 deprecates it (pkgs/top-level/default.nix
      # warns on every evaluation for it) and 26.11 refuses it.
      linuxSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      allSystems = linuxSystems ++ [ "aarch64-darwin" ];
      forSystems = systems: f: lib.genAttrs systems (system: f (pkgsFor system));
      pkgsFor =
        system:
        import nixpkgs {
          inherit system;
          config = import ./nix/nixpkgs-config.nix { inherit lib; };
        };

      contract = import ./nix/contract.nix;
      lock = builtins.fromJSON (builtins.readFile ./flake.lock);
      toolchain = pkgs: import ./nix/toolchain.nix { inherit pkgs lock; };
      project = (builtins.fromTOML (builtins.readFile ./pyproject.toml)).project;
      workspace = uv2nix.lib.workspace.loadWorkspace { workspaceRoot = ./.; };
      src = import ./nix/source.nix { inherit lib; };

      # Image tag and GIT_COMMIT: the commit, or marked dirty for an uncommitted tree.
      revision = self.rev or self.dirtyRev or "dirty";
      tag = self.shortRev or self.dirtyShortRev or "dirty";

      # Everything built for one system, each piece from its own module.
      build =
        pkgs:
        let
          inherit (toolchain pkgs) nodejs;
          python = import ./nix/python.nix {
            inherit
              lib
              pkgs
              workspace
              pyproject-nix
              pyproject-build-systems
              src
              ;
            inherit (toolchain pkgs) python;
          };
          frontend = pkgs.callPackage ./nix/frontend.nix {
            inherit contract nodejs src;
            inherit (python) venv;
            inherit (project) version;
          };
          image = pkgs.callPackage ./nix/image.nix {
            inherit
              contract
              project
              frontend
              revision
              tag
              ;
            inherit (python) venv;
          };
        in
        {
          inherit pkgs nodejs frontend image;
          inherit (python) venv testEnv;
        };

      # Built once per Linux system, shared by packages, apps and checks.
      built = forSystems linuxSystems build;
    in
    {
      packages = lib.mapAttrs (_: app: {
        inherit (app) image frontend venv;
        default = app.image;
      }) built;

      apps = lib.mapAttrs (_: app: {
        push = {
          type = "app";
          program = lib.getExe (app.pkgs.callPackage ./nix/push.nix { inherit (app) image; });
          # Newer Nix warns on an app without meta.description (`nix flake check`).
          meta.description = "Push the image to a registry with skopeo: REGISTRY/NAME TAG [TAG...]";
        };
      }) built;

      devShells = forSystems allSystems (pkgs: {
        default = pkgs.callPackage ./nix/devshell.nix { inherit (toolchain pkgs) python nodejs; };
      });

      # callPackages, not callPackage: callPackage would make the returned set itself
      # overridable (adding `override` and `overrideDerivation`, which `nix flake check` rejects
      # as "not a derivation"); callPackages (nixpkgs lib/customisation.nix, callPackagesWith)
      # returns a plain set and makes each check overridable instead.
      checks = lib.mapAttrs (
        _: app:
        app.pkgs.callPackages ./nix/checks.nix {
          inherit contract revision;
          inherit (app) testEnv nodejs frontend image;
        }
      ) built;

      formatter = forSystems allSystems (pkgs: pkgs.nixfmt);
    };
}
