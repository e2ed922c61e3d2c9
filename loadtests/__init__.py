"""Load runs, the gray-release simulation and the onboarding gates report.

    payscore loadtest --target sandbox|driver ...   Locust, then settle, judge, gate
    payscore gray --users 50000 --policy FILE ...   the funnel, model or live
    payscore gates --driver URL ...                 the four onboarding stages, one report

The pieces other tools reuse: `judge` (what a failed flow is), `gates_math` (the honest
gates), `faults` (a fault mix as arming calls). See loadtests/README.md.
"""
