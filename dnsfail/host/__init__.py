"""How dnsfail fits a host: where its state lives, and telling a service manager how it is.

* ``paths``: the default state file, chosen from the environment (systemd's
  ``$STATE_DIRECTORY``, ``/var/lib/dnsfail`` for a system service, the XDG state
  directory for a user), never from the working directory;
* ``notify``: the ``sd_notify`` protocol (``READY=1``, ``STATUS=``, ``STOPPING=1``,
  ``WATCHDOG=1``) written by hand: one datagram to ``$NOTIFY_SOCKET``.

A leaf: it imports nothing of dnsfail's, so the command line and the daemon can both use it.
"""
