"""`raft-chaos`: a Jepsen-style run against real raft-node processes (docs/chaos.md).

Modules: `cluster` (the processes), `firewall` and `link_proxy` (two ways to cut peer
links, picked by `links`), `nemesis` (a seeded fault schedule and its execution),
`workload` (recorded clients), `verdict` (checker and replica agreement), `report` (HTML
and plots), `cli`.
"""
