"""``dnsfail status | drain | undrain | reload``: a thin client of the control API.

Synchronous and stdlib-only (urllib), because a command that makes one
request needs no event loop.  Everything it shows comes from the server;
it adds a table layout and turns transport failures into one clear line:
unreachable server, missing or wrong token, bad request (with the server's
reason).  Exit codes: 0 done, 1 the server said no (e.g. reload problems,
nothing to undrain), 2 could not ask (unreachable, unauthorized, bad usage).
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import socket
import sys
import time
from typing import Any

from dnsfail.addresses import DEFAULT_CONTROL

DEFAULT_ADDRESS = f"{DEFAULT_CONTROL[0]}:{DEFAULT_CONTROL[1]}"


#: Largest control API answer read (a status of 100,000 targets is ~60 MB); a larger one is
#: an error, not read into memory.
MAX_REPLY = 256 * 1024 * 1024
#: Characters a server's text may not send to the terminal: C0 and C1 controls but newline
#: and tab (an escape sequence in a drain reason could rewrite the screen or the title).
_TERMINAL_UNSAFE = {c: f"\\x{c:02x}" for c in (*range(0, 9), *range(11, 32), *range(127, 160))}


class CtlError(Exception):
    """Could not get an answer from the control API; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def default_control() -> str:
    """The control address a client command reaches without ``--control``."""
    return os.environ.get("DNSFAIL_CONTROL", DEFAULT_ADDRESS)


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", default=default_control(),
                        metavar="HOST:PORT",
                        help=f"control API of the server (env DNSFAIL_CONTROL; default "
                             f"{DEFAULT_ADDRESS})")
    parser.add_argument("--token-file", metavar="FILE",
                        help="bearer token for the control API (else env DNSFAIL_TOKEN)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")


def token_from(args: argparse.Namespace) -> str | None:
    """The bearer token: ``--token-file`` (first line), else the environment.

    Read by the server's own ``control.token.read_token`` (stdlib only), so client and
    server agree on the file format.  Imported here, not at the top: ``cli.main`` imports
    this module, and ``dnsfail check`` loads nothing of the server's packages.
    """
    from dnsfail.control.token import ControlError, read_token

    env = os.environ.get("DNSFAIL_TOKEN") or os.environ.get("DNSFAIL_CONTROL_TOKEN")
    try:
        return read_token(args.token_file, env)
    except ControlError as exc:
        raise CtlError(str(exc)) from None


def base_url(control: str) -> str:
    if control.startswith(("http://", "https://")):
        return control.rstrip("/")
    return f"http://{control}"


def request(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """``(status, decoded JSON or text)`` for 2xx and the 4xx/5xx the caller handles."""
    import urllib.error  # here, so that ``dnsfail check`` never imports the HTTP client
    import urllib.request

    url = base_url(args.control) + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    token = token_from(args)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            return resp.status, _decode(_read(resp), resp.headers.get_content_type())
    except urllib.error.HTTPError as exc:
        payload = _decode(_read(exc), exc.headers.get_content_type())
        if exc.code == 401:
            hint = ("the server wants a token: --token-file FILE or DNSFAIL_TOKEN"
                    if token is None else "the token was rejected (wrong token?)")
            raise CtlError(f"unauthorized by {url}: {hint}") from None
        return exc.code, payload
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(reason, socket.timeout | TimeoutError):
            reason = f"no answer in {args.timeout:g}s"
        raise CtlError(f"cannot reach the control API at {base_url(args.control)}: {reason} "
                       "(is `dnsfail serve` running there? see --control HOST:PORT)") from None


def _read(resp: Any) -> bytes:
    raw: bytes = resp.read(MAX_REPLY + 1)
    if len(raw) > MAX_REPLY:
        raise CtlError(f"the control API answered more than {MAX_REPLY} octets")
    return raw


def _decode(raw: bytes, content_type: str) -> Any:
    text = raw.decode(errors="replace")
    if content_type == "application/json":
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # not JSON, too deep, a 5,000-digit integer
            return text
    return text


def terminal_text(text: str) -> str:
    """A server's ``text`` as it may be printed: controls but newline and tab escaped."""
    return text.translate(_TERMINAL_UNSAFE)


class _Terminal(io.TextIOBase):
    """A stream that escapes what a server's text must not send to a terminal."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(terminal_text(text))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()


def _reason(payload: Any) -> str:
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return str(payload).strip()


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    delta = now - ts
    if delta < 0:
        return f"in {_span(-delta)}"
    return f"{_span(delta)} ago"


def _span(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def describe_server(server: Any) -> str | None:
    """Which server answered, in one line (``server`` of the API's replies), so that an
    operator sees at once when the address reached another instance than meant."""
    if not isinstance(server, dict):
        return None
    listen = ", ".join(server.get("listen") or []) or "-"
    zones = ", ".join(server.get("zone_paths") or []) or "-"
    return (f"server {server.get('identity')} (pid {server.get('pid')}, dnsfail "
            f"{server.get('version')}): DNS {listen}; control {server.get('control')}; "
            f"zones {zones}")


def render_status(s: dict[str, Any], now: float | None = None) -> str:
    """The status document as tables for a terminal."""
    now = time.time() if now is None else now
    lines = [f"dnsfail {s.get('identity', '')}: {'ready' if s.get('ready') else 'NOT READY'}, "
             f"snapshot generation {s.get('generation')}, config generation "
             f"{s.get('config_generation')}"]
    server = describe_server(s.get("server"))
    if server is not None:
        lines.append(server)
    reload = s.get("reload")
    if reload:
        result = "ok" if reload["ok"] else f"REJECTED ({len(reload['problems'])} problem(s))"
        lines.append(f"last reload: {result}, {_ago(reload['at'], now)}"
                     + (f" ({reload['trigger']})" if reload.get("trigger") else ""))
        lines.extend(f"  {p}" for p in reload.get("problems", []))
    lines.append("")
    rows = [["ZONE", "SERIAL", "RECORDS", "LOADED"]]
    rows += [[z["zone"], str(z["serial"]), str(z["records"]), _ago(z.get("loaded_at"), now)]
             for z in s.get("zones", [])]
    lines += _table(rows)
    lines.extend(_record_lines(s.get("records", [])))
    lines.append("")
    rows = [["TARGET", "STATE", "REAL", "LAST PROBE", "TRANSITIONS", "OVERRIDE"]]
    for t in s.get("targets", []):
        last = t.get("last_probe")
        probe = (f"{last['detail']} in {last['latency_ms']:.0f}ms, {_ago(last['at'], now)}"
                 if last else "none yet")
        over = "; ".join(f"{o['selector']} {o['state'].upper()} for {_span(o['expires_in'])}"
                         for o in t.get("overrides", []))
        if not over and t.get("zone_status"):
            over = "zone status " + ",".join(t["zone_status"])
        state = t["state"].upper() + ("*" if t["state"] != t["real_state"] else "")
        rows.append([t["target"], state, t["real_state"].upper(), probe,
                     str(t.get("transitions", 0)), over or "-"])
    if len(rows) > 1:
        lines += _table(rows)
        lines.append("(* forced: the state answers use differs from the probed one)")
    else:
        lines.append("no health-checked targets")
    overrides = s.get("overrides", [])
    if overrides:
        lines.append("")
        rows = [["OVERRIDE", "STATE", "EXPIRES", "DRAIN COMPLETE", "BY", "REASON"]]
        for o in overrides:
            complete = "yes" if o["complete"] else _ago(o["complete_at"], now)
            rows.append([o["selector"], o["state"].upper(), _ago(o["expires"], now), complete,
                         o.get("by") or "-", o["reason"]])
        lines += _table(rows)
    lines.extend(_worker_lines(s.get("workers", []), now))
    if "state_file" in s:
        lines += ["", f"drains kept in: {s['state_file'] or 'memory only'}"]
    return "\n".join(lines)


def _record_lines(records: list[dict[str, Any]]) -> list[str]:
    """One line per rule of each dynamic record: ``record X now answers pool Y`` and why."""
    if not records:
        return []
    lines = [""]
    for r in records:
        name = f"{r['name'].rstrip('.')} {r['type']}"
        for rule in r["rules"]:
            where = f" rule {rule['rule']} ({rule['matches']})" if len(r["rules"]) > 1 else ""
            if rule["servfail"]:
                what = "SERVFAIL (all pools down)"
            elif rule["pool"] is not None:
                what = f"pool {rule['pool']}" + (" (FALLBACK)" if rule["serving"] == "fallback"
                                                 else "")
                what += f": {', '.join(rule['addresses'])}"
            else:
                what = ("BACKUP values" if rule["serving"] == "backup"
                        else "ALL pool values (all down)") + f": {', '.join(rule['addresses'])}"
            lines.append(f"record {name}{where} now answers {what}, ttl {rule['ttl']}")
            lines.append(f"  why: {rule['why']}")
    return lines


def _worker_lines(workers: list[dict[str, Any]], now: float) -> list[str]:
    if not workers:
        return []
    rows = [["WORKER", "PID", "STATE", "GENERATION", "RESTARTS", "QUERIES", "TCP", "REPORTED"]]
    for w in workers:
        state = "ready" if w.get("ready") else ("ALIVE, not ready" if w.get("alive") else "DEAD")
        rows.append([str(w.get("index")), str(w.get("pid") or "-"), state,
                     str(w.get("generation")), str(w.get("restarts", 0)),
                     str(w.get("queries", 0)), str(w.get("tcp_open", 0)),
                     _ago(w.get("reported_at"), now)])
    return ["", *_table(rows)]


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{user}@{socket.gethostname()}"


def main(args: argparse.Namespace) -> int:
    """Run one client command; every failure is one line on stderr."""
    # Text from the server (drain reasons, names) must print under any locale, even text a
    # server of an older version stored: what the terminal cannot show is escaped.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Terminal(out), _Terminal(err)
    try:
        return _run(args)
    except CtlError as exc:
        print(f"dnsfail {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        # A proxy, another program or another version on that port: one line, no traceback.
        print(f"dnsfail {args.command}: the answer of {base_url(args.control)} is not what this "
              f"client understands ({type(exc).__name__}: {str(exc)[:100]}); is it a dnsfail "
              "server of this version?", file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
        sys.stdout, sys.stderr = out, err


def _cluster_line(payload: dict[str, Any]) -> None:
    """``applied on 3/3 instances`` (or which did not answer), for an NS set member."""
    if isinstance(payload.get("cluster"), dict):
        print(f"  {payload['cluster']['summary']}")


def _say_server(payload: Any) -> None:
    line = describe_server(payload.get("server")) if isinstance(payload, dict) else None
    if line is not None:
        print(line)


def _run(args: argparse.Namespace) -> int:
    if args.command == "status" and getattr(args, "cluster", False):
        from dnsfail.cli import nsset

        return nsset.run(args, request, base_url, CtlError)
    if args.command == "status":
        code, payload = request(args, "GET", "/v1/status")
        if code != 200:
            raise CtlError(f"server answered {code}: {_reason(payload)}")
        print(json.dumps(payload, indent=2) if args.json else render_status(payload))
        return 0
    if args.command == "drain":
        body = {"target": args.target, "for": args.duration, "reason": args.reason,
                "state": args.state, "by": who()}
        if args.force:
            body["force"] = True
        code, payload = request(args, "POST", "/v1/drain", body)
        if code == 409 and isinstance(payload, dict):
            _say_server(payload)
            print(f"dnsfail drain: refused: {_reason(payload)} (--force)", file=sys.stderr)
            for record in payload.get("records", []):
                print(f"  {record}: no healthy pool value left", file=sys.stderr)
            return 1
        if code != 200:
            raise CtlError(f"refused ({code}): {_reason(payload)}", 2 if code == 400 else 1)
        if args.json:
            print(json.dumps(payload, indent=2))
            return 0
        _say_server(payload)
        o = payload["override"]
        values = ", ".join(sorted({f"{m['record'].rstrip('.')}/{m['pool']} {m['value']}"
                                   for m in payload["matched"]}))
        verb = "drained" if o["state"] == "down" else "forced up"
        print(f"{verb} {o['selector']} until {payload['expires_at_iso']} ({o['reason']})")
        print(f"  values: {values}")
        print(f"  answers changed now; drain complete at {payload['complete_at_iso']} "
              f"(in {payload['max_ttl']}s: the longest TTL of the records containing it)")
        for warning in payload.get("warnings", []):
            print(f"  note: still answered by {warning}")
        _cluster_line(payload)
        return 0
    if args.command == "undrain":
        code, payload = request(args, "POST", "/v1/undrain", {"target": args.target, "by": who()})
        if code == 404:
            _say_server(payload)
            active = ", ".join(payload.get("active", [])) if isinstance(payload, dict) else ""
            print(f"dnsfail undrain: {_reason(payload)} (active: {active or 'none'})",
                  file=sys.stderr)
            return 1
        if code != 200:
            raise CtlError(f"refused ({code}): {_reason(payload)}", 2 if code == 400 else 1)
        if args.json:
            print(json.dumps(payload, indent=2))
            return 0
        _say_server(payload)
        for o in payload["removed"]:
            print(f"undrained {o['selector']} (was {o['state'].upper()}: {o['reason']})")
        print(f"  answers changed now; every cache has them by {payload['complete_at_iso']}")
        _cluster_line(payload)
        return 0
    # reload
    code, payload = request(args, "POST", "/v1/reload", {})
    if isinstance(payload, dict):
        _say_server(payload)
    if code == 200:
        print(f"reloaded: config generation {payload['config_generation']}")
        return 0
    if code == 422 and isinstance(payload, dict):
        for problem in payload.get("problems", []):
            print(problem)
        print(f"reload rejected: {len(payload.get('problems', []))} problem(s); "
              "the server keeps serving the previous zones", file=sys.stderr)
        return 1
    raise CtlError(f"server answered {code}: {_reason(payload)}", 1)
