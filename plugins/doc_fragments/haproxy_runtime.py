# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by the modules that talk to the HAProxy runtime API.
    DOCUMENTATION = r"""
options:
  socket:
    description:
      - The HAProxy runtime API to talk to (a C(stats socket) line of the HAProxy configuration).
      - Either the path of a unix socket (anything that holds a C(/)), for example
        C(/run/haproxy/admin.sock), which must exist and be a socket; or C(host:port)
        (C([ipv6]:port)) of a TCP listener.
      - Modules that change servers need the socket at C(level admin).
    type: str
    default: /run/haproxy/admin.sock
  timeout:
    description:
      - Seconds to wait for the connection and for each answer of HAProxy.
      - A runtime API that refuses connections (HAProxy restarting) is tried again for as long.
    type: float
    default: 5
notes:
  - Each runtime API command is sent on its own connection (HAProxy's non-interactive mode).
  - Written and tested against HAProxy 2.6.
"""
