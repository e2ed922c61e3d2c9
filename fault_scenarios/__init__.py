"""The 30 anomaly scenarios of WeChat's sandbox gate: data, a runner for any merchant, judges.

- catalogue.yaml / catalogue.py: the scenarios as data, validated when loaded;
- judges.py (with checks.py, evidence.py): pure verdicts over the evidence of one run;
- runner.py (with steps.py, clients.py, target.py): find the merchant and its sandbox, arm
  faults in the sandbox, drive the merchant through its driver API, move the sandbox clock,
  collect the evidence, judge, disarm;
- report.py: JSON, JUnit XML and a self-contained HTML report;
- cli.py: `payscore scenarios list|run`;
- proof.py: which bug switch of the reference merchant each scenario catches.

Everything here reaches merchants and the sandbox over HTTP only; nothing imports the sandbox
or the reference merchant (tests may).
"""
