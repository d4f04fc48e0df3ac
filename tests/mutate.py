"""Mutation testing of the runtime's promises: does each promise have a test that fails when
it breaks?

    uv run python -m tests.mutate            # every mutation (about half an hour here)
    uv run python -m tests.mutate --fast     # those whose tests start no server (CI, minutes)
    uv run python -m tests.mutate --list     # what there is, without running anything
    uv run python -m tests.mutate -k wait    # the mutations whose name contains "wait"

Each mutation below breaks one promise at one place: an exact snippet of a file in working/
and what replaces it. For each, the repository is copied to a temporary directory (the
checkout itself is never written to), the snippet is replaced there, and the tests that claim
the promise run against the copy (PYTHONPATH points every process, servers included, at it).
A mutation is

    caught      the named tests failed
    SURVIVED    they passed: the promise is unguarded
    STALE       the snippet is no longer in the file (the code moved on: update the mutation)
    SKIPPED     a named test was skipped (a missing service) and none failed: proves nothing
    ERROR       the tests could not run (not collected, crashed): proves nothing

and the command exits 1 unless every mutation was caught. The named tests first run once
against the unmutated copy: a test that already fails would "catch" everything.

When an issue adds a promise, add its mutation here and run this before closing the issue.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Test modules that start `working serve` against the prebuilt frontend export.
_STARTS_SERVERS = ("tests/test_server.py", "tests/test_browser.py", "tests/test_cluster.py")


@dataclass(frozen=True)
class Mutation:
    name: str
    promise: str
    path: str
    edits: tuple[tuple[str, str], ...]  # (exact original snippet, replacement), in order
    tests: tuple[str, ...]  # pytest node ids, relative to the repository
    fast: bool = True


def _m(
    name: str, promise: str, path: str, edits: list[tuple[str, str]], tests: list[str], **kw: bool
) -> Mutation:
    return Mutation(name, promise, path, tuple(edits), tuple(tests), **kw)


MUTATIONS = [
    # -- settings and masking ----------------------------------------------------------------
    _m(
        "seconds-upper-bound",
        "a seconds setting has an upper bound (DB_WAIT_TIMEOUT=inf is refused)",
        "working/runtime/settings.py",
        [("if not minimum <= number <= maximum:", "if not minimum <= number:")],
        ["tests/test_settings.py::test_seconds_have_an_upper_bound"],
    ),
    _m(
        "mask-url-keeps-password",
        "a URL is printed with its password masked (check-config, start line)",
        "working/runtime/masking.py",
        [
            (
                '    """postgresql://app:s3cret@db/app -> postgresql://app:***@db/app."""\n',
                '    """postgresql://app:s3cret@db/app -> postgresql://app:***@db/app."""\n'
                "    return url\n",
            )
        ],
        [
            "tests/test_settings.py::test_postgres_url_is_normalised_to_psycopg_and_masked",
            "tests/test_entrypoint.py::test_check_config_prints_effective_settings_masked",
        ],
    ),
    _m(
        "mask-text-misses-userinfo",
        "free text (log lines, errors) has user:password@ in URLs masked",
        "working/runtime/masking.py",
        [
            (
                '    if "://" in text:\n        text = _USERINFO',
                "    if False:\n        text = _USERINFO",
            )
        ],
        ["tests/test_masking.py"],
    ),
    # -- the app's own settings (working/settings.toml) ------------------------------------------
    _m(
        "app-required-setting-unset-starts",
        "a required app setting unset stops every start with one line and exit 2",
        "working/runtime/app_settings.py",
        [("    if s.required and raw is None:\n", "    if False:\n")],
        [
            "tests/test_app_settings.py::"
            "test_a_required_app_setting_unset_stops_with_one_line_and_exit_2[serve]",
            "tests/test_app_settings.py::test_a_bad_value_is_the_runtimes_one_line",
        ],
    ),
    _m(
        "app-required-setting-stops-the-build",
        "a build (the Nix sandbox, CI) compiles the app without its deployment's values",
        "working/runtime/frontend.py",
        [("    for_build()  # the app's", "    pass  # the app's")],
        ["tests/test_app_settings.py::test_a_build_needs_no_deployment_value"],
        fast=False,
    ),
    _m(
        "app-secret-not-masked-in-logs",
        "an app secret's value is masked in every log line",
        "working/runtime/app_settings.py",
        [("        register_secret(value)  # before", "        pass  # before")],
        [
            "tests/test_app_settings.py::"
            "test_a_secret_is_masked_in_check_config_and_in_every_log_line",
        ],
    ),
    _m(
        "app-secret-shown-by-check-config",
        "check-config shows a set app secret as ***",
        "working/runtime/app_settings.py",
        [
            (
                "    return {s.name: MASK if s.secret and values[s.name] else values[s.name]",
                "    return {s.name: values[s.name]",
            )
        ],
        ["tests/test_app_settings.py::test_check_config_shows_the_apps_settings_secrets_masked"],
    ),
    _m(
        "app-setting-missing-from-compose",
        "compose.yaml offers every setting the app declares (Coolify shows only those)",
        "compose.yaml",
        [("      SITE_NOTICE: ${SITE_NOTICE:-}\n", "")],
        ["tests/test_compose.py::test_every_deploy_setting_of_the_contract_is_in_the_file"],
    ),
    # -- exit codes and the wait ---------------------------------------------------------------
    _m(
        "config-error-exit-1",
        "a bad setting exits 2 with one line",
        "working/runtime/errors.py",
        [('    exit_code_name = "config"', '    exit_code_name = "error"')],
        ["tests/test_entrypoint.py::test_bad_settings_exit_2_with_one_line[PORT-migrate]"],
    ),
    _m(
        "dependency-error-exit-1",
        "a database that never comes up exits 3",
        "working/runtime/errors.py",
        [('    exit_code_name = "dependency"', '    exit_code_name = "error"')],
        ["tests/test_entrypoint.py::test_database_never_up_exits_3_after_the_timeout"],
    ),
    _m(
        "wait-deadline-doubled",
        "the database wait gives up at DB_WAIT_TIMEOUT, not later",
        "working/runtime/waiting.py",
        [("deadline = time.monotonic() + timeout", "deadline = time.monotonic() + timeout * 2")],
        ["tests/test_entrypoint.py::test_database_never_up_exits_3_after_the_timeout"],
    ),
    _m(
        "migration-lock-removed",
        "replicas migrating at once take turns at a PostgreSQL advisory lock",
        "working/runtime/migrations.py",
        [
            (
                'conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})',
                'conn.execute(text("SELECT 1"))',
            )
        ],
        ["tests/test_entrypoint.py::test_concurrent_migrations_do_not_race"],
    ),
    _m(
        "sqlite-migration-lock-removed",
        "replicas sharing a SQLite file take turns at its lock file at the first migration",
        "working/runtime/migrations.py",
        [("            fcntl.flock(lock, fcntl.LOCK_EX)\n", "")],
        [
            "tests/test_entrypoint.py::"
            "test_replicas_sharing_a_sqlite_file_take_turns_at_the_first_migration"
        ],
    ),
    # -- shutdown ------------------------------------------------------------------------------
    _m(
        "sigterm-does-not-drain",
        "SIGTERM lets in-flight requests finish, then exits 0",
        "working/runtime/server.py",
        [
            (
                "        self.should_exit = True\n        _start_deadline(",
                "        self.should_exit = self.force_exit = True\n        _start_deadline(",
            )
        ],
        ["tests/test_server.py::test_sigterm_drains_in_flight_requests_and_exits_0[sqlite]"],
        fast=False,
    ),
    _m(
        "second-signal-exits-0",
        "a second signal stops at once and exits 1 (cut downloads are not a clean stop)",
        "working/runtime/server.py",
        [("self.forced = self.force_exit = True", "self.force_exit = True")],
        ["tests/test_server.py::test_second_signal_stops_at_once[sqlite]"],
        fast=False,
    ),
    # -- health --------------------------------------------------------------------------------
    _m(
        "health-probe-per-request",
        "concurrent /health requests share one probe in flight",
        "working/runtime/health.py",
        [("if self._inflight is None or self._inflight.done():", "if True:")],
        ["tests/test_server.py::test_concurrent_health_checks_share_one_probe"],
        fast=False,
    ),
    _m(
        "health-ignores-database",
        "/health says 503 degraded while the database is down",
        "working/runtime/health.py",
        [
            (
                'dependencies_ok = all(r["status"] == "connected" for r in results)',
                "dependencies_ok = True",
            )
        ],
        ["tests/test_server.py::test_health_follows_the_database_down_and_back"],
        fast=False,
    ),
    # -- accounts and notes ----------------------------------------------------------------------
    _m(
        "throttle-after-50",
        "the fifth failed login of a name from one client throttles that client (README)",
        "working/auth.py",
        [("    free: int = 5\n", "    free: int = 50\n")],
        [
            "tests/test_auth_hostile.py::"
            "test_the_fifth_failure_throttles_and_the_fourth_does_not[sqlite]"
        ],
    ),
    _m(
        "session-never-expires",
        "an expired session token logs nobody in",
        "working/auth.py",
        [("if row is None or row.expires_at <= _now():", "if row is None:")],
        ["tests/test_auth_hostile.py::test_expired_sessions_and_old_throttles_are_purged[sqlite]"],
    ),
    _m(
        "throttle-checks-while-blocked",
        "60 parallel wrong passwords: only the first 5 are checked, the count is exact",
        "working/auth.py",
        [("            where=row.blocked_until <= now,\n", "")],
        ["tests/test_auth_hostile.py::test_parallel_wrong_passwords_are_counted_exactly[sqlite]"],
    ),
    _m(
        "hash-pool-unbounded",
        "a full hashing pool refuses at once",
        "working/login_guard.py",
        [("        if self._busy >= self._slots:\n", "        if False:\n")],
        ["tests/test_auth_hostile.py::test_the_hashing_pool_refuses_at_once_when_full"],
    ),
    _m(
        "throttle-per-account",
        "an attacker's failures slow down that client, not the owner elsewhere",
        "working/login_guard.py",
        [('    return headers.get("asgi-scope-client", "")[:64] or "unknown"', '    return "x"')],
        ["tests/test_auth_server.py::test_an_attacker_slows_down_itself_not_the_owner[sqlite]"],
        fast=False,
    ),
    _m(
        "revoked-tab-rehydrates",
        "a tab whose session was revoked forgets its user's name and notes",
        "working/working.py",
        [
            (
                "        if found is None or found.user.username != self.username:",
                "        if found is not None and found.user.username != self.username:",
            )
        ],
        [
            "tests/test_auth_server.py::"
            "test_the_cookie_is_httponly_and_a_revoked_tab_forgets_its_user[sqlite]"
        ],
        fast=False,
    ),
    _m(
        "cookie-readable-by-scripts",
        "the session cookie is HttpOnly",
        "working/session_cookie.py",
        [("Max-Age={max(0, max_age)}; HttpOnly; SameSite", "Max-Age={max(0, max_age)}; SameSite")],
        [
            "tests/test_auth_server.py::"
            "test_the_cookie_is_httponly_and_a_revoked_tab_forgets_its_user[sqlite]"
        ],
        fast=False,
    ),
    _m(
        "note-cap-shared",
        "the note limit is per account",
        "working/notes.py",
        [("            .where(Note.account_id == LoginSession.account_id)\n", "")],
        ["tests/test_app.py::test_note_cap_is_per_account[sqlite]"],
    ),
    _m(
        "notes-listed-for-everyone",
        "an account sees only its own notes",
        "working/notes.py",
        [("Note.account_id == Account.id)", "Note.account_id > 0)")],
        ["tests/test_app.py::test_notes_belong_to_their_owner[sqlite]"],
    ),
    _m(
        "note-deleted-by-anyone",
        "an account deletes only its own notes",
        "working/notes.py",
        [("Note.account_id == select(LoginSession", "Note.account_id != select(LoginSession")],
        ["tests/test_app.py::test_notes_belong_to_their_owner[sqlite]"],
    ),
    _m(
        "notes-for-an-expired-session",
        "a notes event of a tab whose session expired or was revoked reads and writes nothing",
        "working/auth.py",
        [
            (
                "return and_(LoginSession.id == session_id, LoginSession.expires_at > now)",
                "return and_(LoginSession.id == session_id)",
            )
        ],
        ["tests/test_app.py::test_a_dead_session_reads_and_writes_nothing[sqlite]"],
    ),
    # -- static files and the build ----------------------------------------------------------------
    _m(
        "static-reads-disk",
        "no request path reads a file outside the export",
        "working/runtime/static.py",
        [
            (
                '        self._not_found = self._files.get("/404.html")\n',
                '        self._not_found = self._files.get("/404.html")\n'
                "        self._root = directory\n",
            ),
            (
                "        entry = self._files.get(path)\n",
                "        entry = self._files.get(path)\n"
                '        disk = self._root / path.lstrip("/")\n'
                "        if entry is None and disk.is_file():\n"
                "            return Response.of(200, [], disk.read_bytes())\n",
            ),
        ],
        ["tests/test_server.py::test_traversal_paths_never_leave_the_export"],
        fast=False,
    ),
    _m(
        "build-metadata-unpinned",
        "two builds of the same commit are byte-identical",
        "working/runtime/frontend.py",
        [
            (
                'metadata |= {"project_hash": 0, "last_reflex_run_datetime": ',
                'metadata |= {"project_hash_": 0, "last_reflex_run_datetime_": ',
            )
        ],
        ["tests/test_frontend.py::test_two_clean_builds_are_byte_identical"],
        fast=False,
    ),
    # -- what a hostile client can make the server do (issue 12) --------------------------------
    _m(
        "head-size-unbounded",
        "a request head over 64 KiB gets 431 at once and the event loop keeps answering",
        "working/runtime/limits.py",
        [
            (
                "if self._in_head and self._head_bytes > MAX_HEAD_BYTES and",
                "if False and self._in_head and self._head_bytes > MAX_HEAD_BYTES and",
            )
        ],
        [
            "tests/test_limits.py::"
            "test_a_64_mib_header_gets_431_quickly_and_the_event_loop_keeps_answering"
        ],
        fast=False,
    ),
    _m(
        "router-data-unbounded",
        "an event whose router data is over the limit is dropped, not kept in the tab's state",
        "working/runtime/limits.py",
        [
            (
                "or len(json.dumps(router_data, default=str)) > MAX_ROUTER_DATA_BYTES",
                "or len(json.dumps(router_data, default=str)) < 0",
            )
        ],
        ["tests/test_limits.py::test_router_data_over_the_limit_is_dropped"],
        fast=False,
    ),
    _m(
        "log-values-unescaped",
        "no client text can start a log line of its own",
        "working/runtime/logs.py",
        [("    if value.isprintable():  # what", "    if True:  # what")],
        [
            "tests/test_log_safety.py::test_render_escapes_every_line_break_in_text_and_keeps_json_one_line"
        ],
    ),
    # -- deploys that never take the site down (issue 14) -------------------------------------
    _m(
        "empty-is-unset",
        "a required setting that is set but empty is an error (exit 2), not a silent default",
        "working/runtime/settings.py",
        [('        if spec.get("empty_ok"):\n            return None\n', "        return None\n")],
        ["tests/test_settings.py::test_a_variable_set_but_empty_is_an_error_naming_it"],
    ),
    _m(
        "healthcheck-asks-health",
        "the container healthcheck asks whether the process can serve, not the database",
        "working/runtime/entrypoint.py",
        [
            (
                "{contract()['http']['liveness_path']}",
                "{contract()['http']['health_path']}",
            )
        ],
        ["tests/test_liveness.py::test_a_database_outage_keeps_the_container_serving_and_says_so"],
        fast=False,
    ),
    _m(
        "drain-gate-open",
        "on SIGTERM every event already taken is answered, none taken after",
        "working/runtime/draining.py",
        [("            if self.closed:\n", "            if False:\n")],
        [
            "tests/test_event_drain.py::"
            "test_every_stored_note_was_acknowledged_and_every_acknowledged_note_is_stored"
        ],
        fast=False,
    ),
    # -- tabs' state: kept while the tab is open, dropped after (memory), shared (Redis) -------
    _m(
        "open-tab-state-dropped",
        "without Redis, an open tab's state is kept however long it idles; a closed tab's goes",
        "working/runtime/statestore.py",
        [("            if token.ident in namespace.token_to_sid:\n", "            if False:\n")],
        ["tests/test_limits.py::test_a_closed_tabs_state_expires_and_an_open_tabs_stays"],
        fast=False,
    ),
    _m(
        "socket-record-kept",
        "a tab keeps its token and state across reloads, whichever replica each socket reaches",
        "working/runtime/failover.py",
        [
            (
                "            await self._delete_if_ours(\n"
                "                keys=[self._get_redis_key(token)], args=[pickle.dumps(record)]\n"
                "            )\n",
                "            pass\n",
            )
        ],
        ["tests/test_scale.py::test_browser_keeps_its_state_across_reloads"],
        fast=False,
    ),
    # -- the runtime apart from the app (issue 15) --------------------------------------------
    _m(
        "app-page-shadows-health",
        "/health and /livez are the runtime's even when the app puts a page there",
        "working/runtime/static.py",
        [("            if route not in self._reserved:\n", "            if True:\n")],
        ["tests/test_your_app.py::test_built_served_and_driven_in_a_browser"],
        fast=False,
    ),
    _m(
        "runtime-reaches-into-the-app",
        "the runtime imports nothing of the app but through its seam (working/runtime/app.py)",
        "working/runtime/health.py",
        [("from . import db\n", "from . import db\nfrom .. import models  # noqa: F401\n")],
        ["tests/test_layout.py::test_the_runtime_imports_nothing_of_the_app_but_through_its_seam"],
    ),
    _m(
        "rxconfig-overrides-the-runtime",
        "rxconfig.py in either form cannot set what the runtime owns (ports, URLs, database)",
        "working/runtime/reflex_config.py",
        [("        setattr(config, name, value)\n", "")],
        [
            "tests/test_layout.py::test_rxconfig_in_either_form_gets_the_runtimes_fields_and_a_line_for_each_it_overrode"
        ],
    ),
    _m(
        "rxconfig-override-silent",
        "each field of rxconfig.py that the runtime overrides is named in one [WARN] line",
        "working/runtime/reflex_config.py",
        [("            _warn_overridden(name, current)\n", "            pass\n")],
        [
            "tests/test_layout.py::test_rxconfig_in_either_form_gets_the_runtimes_fields_and_a_line_for_each_it_overrode"
        ],
    ),
    _m(
        "csp-ignores-what-the-export-loads",
        "the CSP allows the stylesheet origins an export imports (rx.App(stylesheets=[...]))",
        "working/runtime/security_headers.py",
        [
            (
                '                sources.setdefault("style-src", set()).add(origin)\n',
                "                pass\n",
            )
        ],
        [
            "tests/test_security_headers.py::test_the_origins_the_export_names_are_allowed_for_what_they_are"
        ],
    ),
    _m(
        "csp-data-scripts-always",
        "data: scripts are allowed only for an app with a dynamic component (rx.Component var)",
        "working/runtime/security_headers.py",
        [("        if dynamic_components:\n", "        if True:\n")],
        [
            "tests/test_security_headers.py::test_data_scripts_only_for_an_app_with_dynamic_components"
        ],
    ),
    _m(
        "bundled-libraries-forgotten",
        "a dynamic component imports what the export bundled, not a CDN (the serving process "
        "knows the build's bundled libraries)",
        "working/runtime/build_facts.py",
        [(', *facts["bundled_libraries"]]', "]")],
        ["tests/test_plain_reflex_app.py::test_on_the_runtime_unchanged"],
        fast=False,
    ),
    _m(
        "build-manifest-traceback",
        "an export with an unreadable build manifest stops serve with one line and exit 1",
        "working/runtime/build_facts.py",
        [
            (
                "    except ValueError:\n        facts = None\n",
                "    except OSError:\n        facts = None\n",
            )
        ],
        ["tests/test_entrypoint.py::test_an_unreadable_build_manifest_is_one_line_and_exit_1"],
        fast=False,
    ),
    _m(
        "stateful-pages-not-evaluated",
        "the pages whose evaluation makes state classes (rx.ComponentState) are evaluated by the "
        "serving process, which compiles nothing else",
        "working/runtime/build_facts.py",
        [('json.dumps(facts["stateful_pages"])', "json.dumps([])")],
        ["tests/test_plain_reflex_app.py::test_on_the_runtime_unchanged"],
        fast=False,
    ),
    _m(
        "upload-route-forgotten",
        "an app with an upload gets /_upload though the serving process evaluates no page",
        "working/runtime/build_facts.py",
        [('    if facts["upload_is_used"]:\n', "    if False:\n")],
        [
            "tests/test_plain_reflex_app.py::"
            "test_uploads_live_in_data_dir_are_bounded_and_survive_a_restart"
        ],
        fast=False,
    ),
    _m(
        "uploads-in-the-working-directory",
        "uploaded files go to DATA_DIR/uploaded_files (the volume), not ./uploaded_files",
        "working/runtime/files.py",
        [("    environment.REFLEX_UPLOADED_FILES_DIR.set(uploads)\n", "")],
        [
            "tests/test_plain_reflex_app.py::"
            "test_uploads_live_in_data_dir_are_bounded_and_survive_a_restart"
        ],
        fast=False,
    ),
    _m(
        "uploads-unbounded",
        "an upload over max_upload_bytes is answered 413 with one log line",
        "working/runtime/server.py",
        [("    backend = limits.UploadLimit(backend)\n", "")],
        [
            "tests/test_plain_reflex_app.py::"
            "test_uploads_live_in_data_dir_are_bounded_and_survive_a_restart"
        ],
        fast=False,
    ),
    _m(
        "shared-asset-linked-at-serve",
        "serve writes nothing into the working directory (a shared asset is not linked there)",
        "working/runtime/files.py",
        [("    environment.REFLEX_BACKEND_ONLY.set(True)\n", "")],
        [
            "tests/test_plain_reflex_app.py::"
            "test_serves_a_shared_asset_from_a_read_only_app_directory"
        ],
        fast=False,
    ),
    _m(
        "healthcheck-imports-the-app",
        "the healthcheck never runs the app package's __init__.py (which may import the app)",
        "working_entrypoint.py",
        [("    _defer_package_init()\n    from", "    from")],
        ["tests/test_plain_reflex_app.py::test_the_healthcheck_never_imports_the_app"],
        fast=False,
    ),
    _m(
        "rxconfig-read-after-the-wait",
        "a bad rxconfig.py is one line and exit 2 before the database wait, not after it",
        "working/runtime/entrypoint.py",
        [("    module_name()\n    build_needed", "    build_needed")],
        [
            "tests/test_layout.py::test_a_bad_rxconfig_is_one_line_and_exit_2_before_anything_waits_or_builds"
        ],
    ),
    _m(
        "empty-migration-written",
        "new-migration writes nothing when the models and the app's history agree",
        "working/runtime/migrations.py",
        [("        directives[:] = []\n", "        pass\n")],
        [
            "tests/test_layout.py::"
            "test_new_migration_writes_the_apps_next_revision_and_the_runtime_applies_it"
        ],
    ),
    # -- an app written the Reflex way (tests/apps/plainreflex) -------------------------------
    _m(
        "sqlmodel-import-missing",
        "a new revision for an rx.Model app imports sqlmodel, whose column types it names",
        "working/runtime/migrations.py",
        [('        autogen_context.imports.add("import sqlmodel")\n', "        pass\n")],
        [
            "tests/test_plain_reflex_app.py::"
            "test_new_migration_on_the_adopted_history_writes_what_migrate_applies"
        ],
    ),
    _m(
        "reflex-history-ignored",
        "a Reflex-style history not moved into the package stops the start in one line",
        "working/runtime/migrations.py",
        [("        _refuse_unadopted()\n        log.info(", "        log.info(")],
        ["tests/test_plain_reflex_app.py::test_on_the_runtime_unchanged"],
        fast=False,
    ),
    _m(
        "app-package-not-shipped",
        "an app package the wheel (and image) would not hold stops check-config in one line",
        "working/runtime/app.py",
        [('    _check_shipped(package, rxconfig_path().parent / "pyproject.toml")\n', "")],
        ["tests/test_layout.py::test_an_app_keeps_its_own_package_name_and_the_wheel_must_hold_it"],
    ),
    _m(
        "dynamic-route-not-found",
        "a direct load of the app's dynamic route (/item/42) is the SPA shell with 200, not 404",
        "working/runtime/static.py",
        [("            entry = self._shell\n", "            pass\n")],
        ["tests/test_static.py"],
    ),
    # -- the export's files answered by the HTTP protocol (issue 22) ----------------------------
    _m(
        "files-answered-out-of-turn",
        "a file pipelined behind a request still being answered waits its turn",
        "working/runtime/http_protocol.py",
        [("        if answering or self.pipeline:\n", "        if False:\n")],
        [
            "tests/test_http_protocol.py::test_a_file_is_answered_by_the_protocol_with_the_bytes_asgi_would_send"
        ],
    ),
    _m(
        "files-close-ignored",
        "HTTP/1.0 and Connection: close are answered with connection: close, then closed",
        "working/runtime/http_protocol.py",
        [
            (
                '        keep_alive = version != "1.0" and self.parser.should_keep_alive()\n',
                "        keep_alive = True\n",
            )
        ],
        ["tests/test_http_protocol.py::test_a_request_that_asks_for_close_is_answered_then_closed"],
    ),
    _m(
        "files-idle-connection-kept",
        "a kept-alive connection is closed after the keep-alive timeout, files or not",
        "working/runtime/http_protocol.py",
        [("        self.on_response_complete()\n        return True\n", "        return True\n")],
        [
            "tests/test_http_protocol.py::test_a_kept_alive_connection_is_closed_once_idle_for_the_keep_alive_timeout"
        ],
    ),
    _m(
        "files-head-sends-the-body",
        "HEAD is answered with the length and no body",
        "working/runtime/http_protocol.py",
        [
            (
                '        body = b"" if method == b"HEAD" else response.body\n',
                "        body = response.body\n",
            )
        ],
        [
            "tests/test_http_protocol.py::test_head_304_and_a_dropped_request_body_leave_the_connection_in_step"
        ],
    ),
    _m(
        "files-buffered-for-a-client-not-reading",
        "a client that does not read its answers gets no more of them buffered",
        "working/runtime/http_protocol.py",
        [("        if self.flow.write_paused:", "        if False:")],
        [
            "tests/test_http_protocol.py::test_a_client_that_reads_nothing_is_not_buffered_for[small-files-pipelined]"
        ],
    ),
    _m(
        "files-large-body-in-one-write",
        "a file over one chunk goes out as the client reads it, not into the server's buffer whole",
        "working/runtime/http_protocol.py",
        [("        if len(body) > CHUNK:\n            return False\n", "")],
        [
            "tests/test_http_protocol.py::test_a_client_that_reads_nothing_is_not_buffered_for[one-large-file]"
        ],
    ),
    _m(
        "pipelined-answer-writes-after-the-client-left",
        "a client gone with pipelined answers pending leaves no error and no task",
        "working/runtime/http_protocol.py",
        [("            running.disconnected = True\n", "")],
        [
            "tests/test_http_protocol.py::"
            "test_a_client_gone_with_answers_pending_leaves_no_error_and_no_task"
        ],
    ),
    _m(
        "files-access-line-names-the-proxy",
        "the access line of a file names the client a trusted proxy forwarded, as for any request",
        "working/runtime/http_protocol.py",
        [
            (
                "            self._client(), method.decode()",
                "            self.client, method.decode()",
            )
        ],
        ["tests/test_limits.py::test_forwarded_headers_are_believed_only_from_trusted_proxies"],
        fast=False,
    ),
    _m(
        "build-reads-the-deployment-database",
        "a build prerenders from a scratch SQLite database at the app's head, never DATABASE_URL",
        "working/runtime/frontend.py",
        [('        "DATABASE_URL": f"sqlite:///{web.parent / \'build.db\'}",\n', "")],
        ["tests/test_plain_reflex_app.py::test_on_the_runtime_unchanged"],
        fast=False,
    ),
    _m(
        "reflex-engine-not-shared",
        "rx.session() uses the runtime's engine (one pool; no 'run reflex db init' warning)",
        "working/runtime/server.py",
        [("    db.share_with_reflex(settings)\n", "")],
        ["tests/test_plain_reflex_app.py::test_on_the_runtime_unchanged"],
        fast=False,
    ),
    _m(
        "serve-imports-alembic",
        "the serving process at head imports no Alembic (Reflex's model module would)",
        "working/runtime/db.py",
        [('    sys.modules["alembic"] = None  # type: ignore[assignment]\n', "")],
        [
            "tests/test_app.py::"
            "test_the_serving_process_shares_its_engine_with_reflex_without_alembic"
        ],
    ),
    _m(
        "reflex-migration-helpers-misleading",
        "Reflex's migration helpers in the server name the runtime's commands, not a missing "
        "reflex[db]",
        "working/runtime/db.py",
        [("        setattr(model, name, _runtime_migrates)\n", "        pass\n")],
        [
            "tests/test_app.py::"
            "test_the_serving_process_shares_its_engine_with_reflex_without_alembic"
        ],
    ),
    _m(
        "idle-connection-never-pinged",
        "a pooled connection the database closed meanwhile is replaced on checkout, no error",
        "working/runtime/db.py",
        [
            (
                "    if checked_in is None or time.monotonic() - checked_in"
                " < _PING_AFTER_IDLE_S:\n",
                "    if True:\n",
            )
        ],
        [
            "tests/test_app.py::"
            "test_a_pooled_connection_the_database_dropped_is_replaced_on_checkout"
        ],
    ),
    _m(
        "busy-connection-pinged",
        "a connection used a moment ago is not pinged (one round trip fewer per event)",
        "working/runtime/db.py",
        [
            (
                "    if checked_in is None or time.monotonic() - checked_in"
                " < _PING_AFTER_IDLE_S:\n",
                "    if checked_in is None:\n",
            )
        ],
        [
            "tests/test_app.py::"
            "test_a_pooled_connection_the_database_dropped_is_replaced_on_checkout"
        ],
    ),
    # -- the Coolify deploy script (issue 20) --------------------------------------------------
    _m(
        "deploy-sends-force-false",
        "the deploy sends `force` only when asked (Coolify before v4.2.0 reads false as true)",
        ".github/scripts/coolify_deploy.py",
        [('**({"force": "true"} if force else {})', '"force": "true" if force else "false"')],
        ["tests/test_coolify_deploy.py::test_success_after_some_polls"],
    ),
    _m(
        "deploy-refusal-followed-as-service",
        "an application deploy answer without deployment_uuid fails in one line",
        ".github/scripts/coolify_deploy.py",
        [('if not pending and args.kind == "application":', "if False:")],
        [
            "tests/test_coolify_deploy.py::test_an_application_coolify_does_not_deploy_fails_in_one_line"
        ],
    ),
    _m(
        "deploy-follows-a-preview",
        "'already queued' follows the app's own deployment, never a preview's",
        ".github/scripts/coolify_deploy.py",
        [('        and str(d.get("pull_request_id", 0)) == "0"\n', "")],
        [
            "tests/test_coolify_deploy.py::test_preview_deployments_are_not_the_apps_queued_deployment"
        ],
    ),
    _m(
        "rollback-always-redeploys",
        "a rollback redeploys only when the previous commit no longer serves",
        ".github/scripts/coolify_deploy.py",
        [("        if still_serving(app, args, previous, failure):\n", "        if False:\n")],
        [
            "tests/test_coolify_deploy.py::"
            "test_a_failed_deployment_restores_the_previous_tag_and_says_so[pull-failed]"
        ],
    ),
    _m(
        "rollback-skips-a-running-deployment",
        "a deployment still running at its deadline is redeployed over, even if the old serves",
        ".github/scripts/coolify_deploy.py",
        [
            (
                "    over = isinstance(failure, NothingDeployed) or failure.ended\n",
                "    over = True\n",
            )
        ],
        [
            "tests/test_coolify_deploy.py::"
            "test_a_deployment_still_running_at_its_deadline_is_redeployed_over"
        ],
    ),
    _m(
        "deploy-budget-has-no-reserve",
        "the deploy leaves the rollback its share of --budget",
        ".github/scripts/coolify_deploy.py",
        [
            (
                "    deadline.at = deadline.clock() + args.budget - reserve\n",
                "    deadline.at = deadline.clock() + args.budget\n",
            )
        ],
        ["tests/test_coolify_deploy.py::test_the_budget_keeps_the_rollbacks_share"],
    ),
    # -- test helpers the Nix check depends on ----------------------------------------------
    _m(
        "large-asset-copy-read-only",
        "the slow-download tests add their asset to a copy of a read-only (store) export",
        "tests/slow_clients.py",
        [("        directory.chmod(directory.stat().st_mode | stat.S_IWUSR)\n", "        pass\n")],
        ["tests/test_slow_clients.py::test_the_large_asset_copy_works_on_a_read_only_export"],
    ),
    _m(
        "unlisted-skip-accepted",
        "checks.pytest fails on a skip nix/pytest-check.toml does not list",
        "tests/pytest_check.py",
        [("        if nodeid not in expected\n", "        if False\n")],
        ["tests/test_pytest_check.py::test_only_the_listed_skips_pass"],
    ),
]


@dataclass
class Outcome:
    verdict: str
    detail: str
    seconds: float


def _copy_repo(dest: Path) -> None:
    """The files git knows (tracked, or new and not ignored), as they are on disk now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = REPO / os.fsdecode(name)
        if source.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _run_tests(copy: Path, tests: tuple[str, ...], env: dict[str, str], report: Path) -> Outcome:
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *tests,
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - started
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    first_failure = ""
    if report.is_file():
        root = ET.parse(report).getroot()  # noqa: S314 (our own pytest's report)
        for suite in root.iter("testsuite"):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
        for element in root.iter():
            if element.tag in ("failure", "error") and not first_failure:
                first_failure = (element.get("message") or "").splitlines()[0][:160]
        report.unlink()
    if result.returncode == 1 and counts["failures"] + counts["errors"] > 0:
        return Outcome("caught", first_failure, took)
    if result.returncode == 0 and counts["skipped"]:
        return Outcome("SKIPPED", f"{counts['skipped']} of {counts['tests']} skipped", took)
    if result.returncode == 0:
        return Outcome("SURVIVED", f"{counts['tests']} test(s) passed", took)
    tail = (result.stdout + result.stderr).strip().splitlines()[-1:] or [""]
    return Outcome("ERROR", f"pytest exit {result.returncode}: {tail[0][:160]}", took)


def _apply(file: Path, edits: tuple[tuple[str, str], ...]) -> str | None:
    """Apply the edits; None when done, else why the mutation is stale."""
    text = file.read_text()
    for original, replacement in edits:
        found = text.count(original)
        if found != 1:
            return f"snippet found {found} times: {original.strip().splitlines()[0][:60]!r}"
        text = text.replace(original, replacement)
    file.write_text(text)
    return None


def _frontend_export(work: Path, env: dict[str, str]) -> str:
    """One export for every run (what conftest would otherwise build per pytest session)."""
    prebuilt = os.environ.get("WORKING_TEST_FRONTEND")
    if prebuilt:
        return prebuilt
    out = work / "export"
    print("building the frontend export once ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "working.runtime.entrypoint", "build-frontend", "--out", str(out)],
        cwd=work / "repo",
        env=env,
        check=True,
        capture_output=True,
    )
    return str(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.mutate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--fast", action="store_true", help="only the mutations marked fast")
    parser.add_argument("-k", dest="match", default="", help="only mutations whose name has this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if (m.fast or not args.fast) and args.match in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name:28} {'fast' if m.fast else 'slow'}  {m.path:22} {m.promise}")
        return 0
    if not chosen:
        print("no mutation matches", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="working-mutate-") as tmp:
        work = Path(tmp)
        copy = work / "repo"
        _copy_repo(copy)
        env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("CI", None)  # a skip is reported as SKIPPED here, not turned into a failure
        if any(t.startswith(_STARTS_SERVERS) for m in chosen for t in m.tests):
            env["WORKING_TEST_FRONTEND"] = _frontend_export(work, env)
        report = work / "report.xml"

        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            print(f"baseline: {len(tests)} test(s) against the unmutated copy ...", flush=True)
            base = _run_tests(copy, tests, env, report)
            if base.verdict != "SURVIVED":
                print(f"baseline not clean ({base.verdict}: {base.detail}); nothing to measure")
                return 2
            print(f"baseline: passed in {base.seconds:.0f}s", flush=True)

        results: list[tuple[Mutation, Outcome]] = []
        for m in chosen:
            file = copy / m.path
            original = file.read_bytes()
            stale = _apply(file, m.edits)
            if stale is not None:
                outcome = Outcome("STALE", stale, 0.0)
            else:
                try:
                    outcome = _run_tests(copy, m.tests, env, report)
                finally:
                    file.write_bytes(original)
            assert file.read_bytes() == original
            results.append((m, outcome))
            print(
                f"{outcome.verdict:8} {m.name} ({outcome.seconds:.0f}s) {outcome.detail}",
                flush=True,
            )

    print()
    print("| mutation | promise | where | test(s) | result |")
    print("|---|---|---|---|---|")
    for m, outcome in results:
        tests = "<br>".join(t.removeprefix("tests/") for t in m.tests)
        print(f"| {m.name} | {m.promise} | {m.path} | {tests} | {outcome.verdict} |")
    survived = [m.name for m, o in results if o.verdict != "caught"]
    print()
    print(
        f"{len(results) - len(survived)} of {len(results)} caught"
        + (f"; not caught: {', '.join(survived)}" if survived else "")
    )
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
