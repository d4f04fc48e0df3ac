# A stand-in for `import nixpkgs { system; config; }`, for evaluating the whole flake where nixpkgs
# cannot be downloaded (tests/nix/flake-eval.nix, tests/test_nix.py).
#
# What is real: nixpkgs.lib (so callPackage, callPackages, makeScope, makeOverridable and
# overrideScope behave exactly as in nixpkgs), builtins.derivation (every package and check is
# instantiated to a .drv, as `nix flake check` does), and pyproject.nix and uv2nix themselves.
# What stands in: each nixpkgs function the flake reaches, with exactly the formal arguments
# recorded in standin-signatures.json (source file and revision there): an unknown or a missing
# argument fails evaluation naming the function and where its signature was read. Packages are
# derivations with a fake builder; nothing is built.
{
  lib,
  signatures,
  system,
  config ? { },
  overlays ? [ ],
  ...
}:
let
  platform = lib.systems.elaborate system;

  # A function with exactly the recorded formals (signatures.nix, generated from
  # standin-signatures.json): a call with an argument outside them, or without a required one,
  # fails with Nix's own error, at the line that names the source the signature was read from.
  checked = name: impl: signatures.${name} impl;

  # stdenv.mkDerivation: attrs or `finalAttrs: attrs`, overrideAttrs, passthru, env, meta, and
  # what a real derivation rejects (a set or a function where a string is needed) fails here too.
  notDrvAttrs = [
    "passthru"
    "meta"
    "env"
    "finalPackage"
    "pos"
    "nativeCheckInputs"
    "checkInputs"
  ];
  mkDerivation =
    fnOrAttrs:
    let
      make =
        rattrs:
        let
          attrs = lib.fix (final: rattrs final // { finalPackage = result; });
          name = attrs.name or "${attrs.pname}-${attrs.version}";
          env = attrs.env or { };
          drv = derivation (
            removeAttrs attrs notDrvAttrs
            // env
            // {
              inherit name system;
              builder = "/bin/sh";
              args = [
                "-c"
                "echo stand-in derivations are never built; exit 1"
              ];
            }
          );
        in
        (attrs.passthru or { })
        // drv
        // {
          passthru = attrs.passthru or { };
          meta = attrs.meta or { };
          overrideAttrs = f: make (lib.extends (lib.toExtension f) rattrs);
          drvAttrs = attrs;
        };
      result = make (if builtins.isFunction fnOrAttrs then fnOrAttrs else _: fnOrAttrs);
    in
    result;

  package =
    pname: version: extra:
    mkDerivation (
      {
        inherit pname version;
        meta.mainProgram = pname;
      }
      // extra
    );

  stdenv = {
    inherit mkDerivation;
    hostPlatform = platform;
    buildPlatform = platform;
    targetPlatform = platform;
    inherit (platform) isLinux isDarwin is64bit;
    cc = {
      isGNU = true;
      isClang = false;
      libc = package "glibc" "2.40" { linuxHeaders.version = "6.12"; };
    };
    shellPackage = bash;
  };

  runCommand =
    name: env: buildCommand:
    mkDerivation ({ inherit name buildCommand; } // env);

  bash = package "bash" "5.3" { };

  # Insecure packages: nixpkgs refuses them unless the config permits them (check-meta.nix).
  insecure =
    drv:
    let
      permitted =
        (config.allowInsecurePredicate or (_: false)) drv
        || builtins.elem drv.name (config.permittedInsecurePackages or [ ]);
    in
    if permitted then
      drv
    else
      throw "Package ‘${drv.name}’ is marked as insecure, refusing to evaluate (stand-in for check-meta.nix)";

  nodejs-slim_20 = insecure (package "nodejs-slim" "20.20.2" { });
  nodejs_20 = insecure (
    package "nodejs" "20.20.2" {
      passthru.python = python3;
    }
  );

  mkPython =
    minor: patch:
    let
      version = "3.${minor}.${patch}";
      self = package "python3" version {
        passthru = {
          implementation = "cpython";
          pythonVersion = "3.${minor}";
          sourceVersion = {
            major = "3";
            inherit minor patch;
            suffix = "";
          };
          libPrefix = "python3.${minor}";
          executable = "python3.${minor}";
          sitePackages = "lib/python3.${minor}/site-packages";
          interpreter = "${self}/bin/python3.${minor}";
          pythonOnBuildForHost = self;
          isPy3k = true;
          pythonAtLeast = lib.versionAtLeast "3.${minor}";
          pythonOlder = lib.versionOlder "3.${minor}";
          inherit stdenv;
        };
      };
    in
    self;
  python312 = mkPython "12" "12";
  python3 = mkPython "13" "9";

  pkgs = lib.makeScope lib.callPackageWith (
    self:
    {
      inherit
        lib
        stdenv
        runCommand
        bash
        nodejs_20
        nodejs-slim_20
        python312
        python3
        ;
      pkgs = self;
      buildPackages = self;
      pkgsBuildHost = self;
      inherit system config overlays;
      stdenvNoCC = stdenv;
      bashNonInteractive = bash;

      callPackages = lib.callPackagesWith self;

      # Trivial builders.
      writeText = name: text: runCommand name { inherit text; } "";
      writeTextDir = path: text: runCommand (baseNameOf path) { inherit text path; } "";
      writeShellApplication = checked "writeShellApplication" (
        args:
        mkDerivation {
          inherit (args) name text;
          runtimeInputs = args.runtimeInputs or [ ];
          meta.mainProgram = args.name;
          passthru = args.passthru or { };
        }
      );
      symlinkJoin =
        args:
        mkDerivation (
          removeAttrs args [ "paths" ]
          // {
            paths = args.paths;
          }
        );
      makeSetupHook = checked "makeSetupHook" (
        args: script:
        mkDerivation {
          name = args.name or "hook";
          inherit script;
          propagatedBuildInputs = args.propagatedBuildInputs or [ ];
          substitutions = builtins.toJSON (args.substitutions or { });
          passthru = args.passthru or { };
        }
      );
      replaceVars =
        script: replacements:
        mkDerivation {
          name = baseNameOf script;
          inherit script;
          replacements = builtins.toJSON replacements;
        };
      fetchurl = checked "fetchurl" (
        args:
        mkDerivation {
          name = args.name or (baseNameOf (args.url or (lib.head args.urls)));
          url = args.url or (lib.head args.urls);
          passthru = args.passthru or { };
        }
      );
      mkShell = checked "mkShell" (
        args:
        mkDerivation (
          removeAttrs args [
            "packages"
            "inputsFrom"
          ]
          // {
            name = args.name or "nix-shell";
            nativeBuildInputs = (args.nativeBuildInputs or [ ]) ++ (args.packages or [ ]);
          }
        )
      );

      # callPackage's result in nixpkgs is overridable the same way.
      fakeNss = lib.makeOverridable (checked "fakeNss" (
        args:
        self.symlinkJoin {
          name = "fake-nss";
          passwd = lib.concatMapStrings (line: line + "\n") (args.extraPasswdLines or [ ]);
          group = lib.concatMapStrings (line: line + "\n") (args.extraGroupLines or [ ]);
          paths = [ ];
        }
      )) {
        inherit lib runCommand;
        inherit (self) symlinkJoin writeTextDir;
      };

      dockerTools = {
        caCertificates = runCommand "ca-certificates" { } "";
        streamLayeredImage = checked "dockerTools.streamLayeredImage" (
          args:
          let
            tag = args.tag or null;
            conf = runCommand "${baseNameOf args.name}-conf.json" {
              # As in nixpkgs: the config is written as JSON, so it must be plain data.
              config = builtins.toJSON (args.config or { });
              contents = args.contents or [ ];
              inherit (args) name;
              extraCommands = args.extraCommands or "";
              fakeRootCommands = args.fakeRootCommands or "";
            } "";
          in
          runCommand "stream-${baseNameOf args.name}" {
            imageName = lib.toLower args.name;
            inherit conf;
            passthru = (args.passthru or { }) // {
              imageTag = if tag != null then tag else "hash";
              isExe = true;
              # For the tests: what the image was asked to be.
              standin = {
                inherit (args) name;
                inherit tag;
                config = args.config or { };
                extraCommands = args.extraCommands or "";
                fakeRootCommands = args.fakeRootCommands or "";
                contents = map (p: p.name) (args.contents or [ ]);
              };
            };
          } ""
        );
      };

      importNpmLock = {
        buildNodeModules = checked "importNpmLock.buildNodeModules" (
          args:
          let
            package = args.package or (lib.importJSON (args.npmRoot + "/package.json"));
            packageLock = args.packageLock or (lib.importJSON (args.npmRoot + "/package-lock.json"));
          in
          mkDerivation (
            (args.derivationArgs or { })
            // {
              pname = "${package.name or "unknown"}-node-modules";
              version = package.version or "0.0.0";
              nativeBuildInputs = [ args.nodejs ];
              package = builtins.toJSON package;
              packageLock = builtins.toJSON packageLock;
            }
          )
        );
      };

      testers.runNixOSTest = checked "testers.runNixOSTest" (
        args:
        runCommand "vm-test-run-${args.name}" {
          # The test script is a string with the image and the smoke script in it.
          inherit (args) testScript;
          # Each node is a NixOS module function; its own options are not evaluated here.
          nodes = builtins.toJSON (lib.mapAttrs (_: m: builtins.isFunction m || builtins.isAttrs m) args.nodes);
        } ""
      );

      # Packages the flake names.
      uv = package "uv" "0.9.9" { };
      postgresql = package "postgresql" "17.6" { };
      redis = package "redis" "8.2.1" { };
      skopeo = package "skopeo" "1.20.0" { };
      nixfmt = package "nixfmt" "1.0.1" { };
      ruff = package "ruff" "0.15.4" { };
      removeReferencesTo = package "remove-references-to" "0" { };
      ugrep = package "ugrep" "7.5.0" { };
      unzip = package "unzip" "6.0" { };
      autoPatchelfHook = package "auto-patchelf-hook" "0" { };
      pythonManylinuxPackages = {
        manylinux1 = [ ];
        manylinux2010 = [ ];
        manylinux2014 = [ ];
      };
    }
  );
in
pkgs
