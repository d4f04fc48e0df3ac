# The app's own sources: what hatchling packs into the wheel and what Reflex compiles the
# frontend from. Tests, docs and the Nix files are left out, so editing them rebuilds neither the
# virtual environment nor the frontend. nix/frontend (the committed npm lock) stays in.
{ lib }:
let
  root = ../.;
in
lib.fileset.toSource {
  inherit root;
  fileset = lib.fileset.difference root (
    lib.fileset.unions [
      (lib.fileset.fileFilter (file: file.hasExt "nix") ./.)
      (lib.fileset.maybeMissing ../tests)
      (lib.fileset.maybeMissing ../.git)
      (lib.fileset.maybeMissing ../.github)
      (lib.fileset.maybeMissing ../docs)
      ../flake.nix
      (lib.fileset.maybeMissing ../flake.lock)
    ]
  );
}
