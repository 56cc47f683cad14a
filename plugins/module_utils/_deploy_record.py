# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of hitless.deploy.deploy_record, shared by its action plugin (which does the
work) and its module stub (which ansible-doc and validate-modules read)."""

OUTCOMES = ("failed", "repaired", "unchanged", "would_deploy", "deployed", "checked", "prepared")

ARGUMENT_SPEC = dict(
    release=dict(type="str", required=True),
    from_release=dict(type="str", default=""),
    outcome=dict(type="str", required=True, choices=list(OUTCOMES)),
    repaired=dict(type="str", default=""),
    deploy_id=dict(type="str", default=""),
    failure=dict(type="dict", default={}),
    clone_lifetime=dict(type="float"),
    canary=dict(type="dict", default={}),
    marks=dict(type="list", elements="dict", default=[]),
    dest=dict(type="path"),
    stats_key=dict(type="str", default="hitless_rolling", no_log=False),
)
