"""The dashboard at /sandbox/ui/, driven as a person would: headless Chromium over real HTTP.

Each module gets one live sandbox (frozen clock, so callback retries never fall due behind a
test's back); one browser serves the session; every test makes its own orders. Screenshots land
in docs/screenshots/ on request. The read API under the pages (/sandbox/api/) is tested in
tests/test_dashboard_api.py.
"""
