"""The descriptor budget: raise the open-file limit, and fit the connection caps inside it.

Every accepted connection costs a descriptor; when they are gone, probes
fail with EMFILE and healthy sites look down (issue 11).  So at start the
soft limit is raised to the hard one (:func:`raise_fd_limit`) and the DNS
TCP and control connection caps are lowered, if need be, to leave room for
the probes and the process's own files (:func:`fit_descriptors`).

It must not import ``serve.app`` or anything of ``control``.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

#: Probes in flight at once (each holds one socket while it runs).
PROBE_IN_FLIGHT = 64
#: Descriptors kept free of every connection cap: listeners, the log, the state file and its
#: directory, the GeoIP database, epoll, worker pipes, threads' files, the interpreter's own.
FD_RESERVE = 64
#: Fewest connections a cap is lowered to when the open-file limit is too small for all.
MIN_CAP = 16


def fit_descriptors(limit: int, dns: int, control: int) -> tuple[int, int]:
    """The DNS TCP and control caps (``control`` 0: no control API) that fit ``limit``.

    DNS TCP + control + PROBE_IN_FLIGHT + FD_RESERVE must stay within the
    open-file limit.  If the caps do not fit, they are lowered (control
    first, it matters least) and a warning says so: a cap we cannot honour
    is a lie.
    """
    room = limit - PROBE_IN_FLIGHT - FD_RESERVE
    if dns + control <= room:
        return dns, control
    new_control = min(control, max(MIN_CAP, room // 8)) if control else 0
    new_dns = min(dns, max(MIN_CAP, room - new_control))
    log.warning("open-file limit %d is too small for %d DNS TCP + %d control connections "
                "+ %d probes + %d reserved: lowered to %d DNS TCP and %d control "
                "connections (raise the hard limit, e.g. LimitNOFILE= in systemd)",
                limit, dns, control, PROBE_IN_FLIGHT, FD_RESERVE, new_dns, new_control,
                extra={"fields": {"event": "fd_limit", "limit": limit,
                                  "tcp_max_connections": new_dns,
                                  "control_max_connections": new_control}})
    return new_dns, new_control


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one; the limit now in force.

    The common soft limit of 1,024 is a compatibility default for select();
    we use epoll, and every connection, probe and file needs a descriptor.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:  # the kernel still caps it (fs.nr_open)
        target = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open-file limit: could not raise soft limit %d to %d: %s", soft,
                        target, exc)
            target = soft
    else:
        target = soft
    log.info("open-file limit: %d (soft was %d, hard %s)", target, soft,
             "unlimited" if hard == resource.RLIM_INFINITY else hard)
    return int(target)
