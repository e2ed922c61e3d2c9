"""The scenario catalogue: exactly 30, validated at load, in step with the sandbox's closed set
of effects and operations, the README's table, and the import rules of the runner."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fault_scenarios import catalogue
from fault_scenarios.catalogue import CatalogueError, parse
from fault_scenarios.report import README_END, README_START, markdown_table
from fault_scenarios.steps import STEP_FUNCS

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "fault_scenarios"


FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FAST_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def raw() -> dict:
    return yaml.load(catalogue.CATALOGUE_FILE.read_text(encoding="utf-8"), Loader=FAST_LOADER)


def broken(mutate) -> str:
    doc = raw()
    mutate(doc["scenarios"])
    return yaml.dump(doc, Dumper=FAST_DUMPER, allow_unicode=True)


def test_thirty_scenarios_with_ids_1_to_30_in_every_category():
    scenarios = catalogue.load()
    assert [s.id for s in scenarios] == list(range(1, 31))
    assert {s.category for s in scenarios} == set(catalogue.CATEGORIES)
    assert len({s.slug for s in scenarios}) == 30
    for s in scenarios:
        assert s.sandbox and s.merchant and s.remedy and s.verdict.startswith(s.judge)


def test_every_step_kind_is_implemented_and_every_fault_needs_a_taker():
    assert set(catalogue.STEPS) == set(STEP_FUNCS)
    for s in catalogue.load():
        # a scenario whose faults are all optional could pass without exercising anything
        armed = list(s.faults) + [st.args for st in s.steps if st.kind == "arm"]
        assert not armed or any(f.get("required", True) for f in armed), s.slug


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s[0]["faults"][0].update(effect="network_gremlin"), "effect"),
    (lambda s: s[0]["faults"][0].update(operation="create_order"), "operation"),
    (lambda s: s[1].update(id=1), "duplicate scenario id 1"),
    (lambda s: s[0]["judge"].update(name="vibes"), "judge"),
    (lambda s: s[0]["judge"].update(params={"strictness": 3}), "takes no parameter"),
    (lambda s: s[0]["faults"][0]["params"].update(sekonds=3), "no parameter 'sekonds'"),
    (lambda s: s[0]["faults"][0]["params"].update(seconds="$soon"), "unknown placeholder"),
    (lambda s: s[0]["steps"].append({"teleport": {}}), "unknown step 'teleport'"),
    (lambda s: s[0]["steps"].append({"finish": {"amount": -1}}), "finish"),
    (lambda s: s[12]["faults"][0].update(remaining=1), "one-shot action"),
    (lambda s: s[0]["faults"][0].update(scope="order"), "only be armed by an `arm` step"),
    (lambda s: s[11]["faults"][0].update(effect="http_error", params={}), "not callbacks"),
    (lambda s: s[0]["faults"][0].update(effect="callback_drop", params={}), "not API answers"),
    (lambda s: s.pop(), "exactly 30 scenarios, not 29"),
    (lambda s: s[0].update(category="weather"), "category"),
])
def test_a_malformed_catalogue_fails_at_once_naming_what_is_wrong(mutate, message):
    with pytest.raises(CatalogueError, match=re.escape(message)) as info:
        parse(broken(mutate))
    if "exactly" not in message and "duplicate" not in message:
        assert "scenario" in str(info.value)


def test_select_parses_ids_and_ranges_and_refuses_unknown_ones():
    assert [s.id for s in catalogue.select("3, 1,10-12")] == [1, 3, 10, 11, 12]
    assert len(catalogue.select(None)) == 30
    with pytest.raises(CatalogueError, match="no scenario 31"):
        catalogue.select("29-31")
    with pytest.raises(CatalogueError, match="not an id"):
        catalogue.select("one")


# ---------------------------------------------------------------- in step with the sandbox


def test_effect_kinds_and_their_parameters_are_the_sandboxs():
    from sandbox.faults.effects import KINDS

    assert set(catalogue.EFFECTS) == set(KINDS)
    for name, effect in KINDS.items():
        assert catalogue.EFFECTS[name] == set(effect.params._declared_fields), name
        assert (name in catalogue.ACTIONS) == effect.is_action, name


def test_operations_and_events_are_the_sandboxs(app):
    from sandbox.faults.params import EVENTS
    from sandbox.views.control_faults import operations

    with app.app_context():
        assert catalogue.OPERATIONS == operations()
    assert catalogue.EVENTS == set(EVENTS)


# ---------------------------------------------------------------- the README's table


def test_list_markdown_prints_the_generated_table():
    from sandbox.cli import _register_plugins, cli

    _register_plugins()
    result = CliRunner().invoke(cli, ["scenarios", "list", "--markdown"])
    assert result.exit_code == 0, result.output
    assert result.output == markdown_table(catalogue.load())
    assert result.output.count("\n") == 32  # header, rule, 30 rows


def test_readme_scenario_table_matches_the_catalogue():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert README_START in text and README_END in text, (
        "README.md needs the markers around the scenario table; paste the output of "
        "`payscore scenarios list --markdown` between them")
    block = text.split(README_START, 1)[1].split(README_END, 1)[0]
    assert block.strip() == markdown_table(catalogue.load()).strip(), (
        "README's scenario table is stale: regenerate it with "
        "`payscore scenarios list --markdown`")


# ---------------------------------------------------------------- HTTP only


def test_fault_scenarios_imports_neither_the_sandbox_nor_the_merchant():
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("sandbox", "merchant_kit", "loadtests")), \
                    f"{path.name} imports {name}: the runner talks HTTP only"


def test_the_runner_speaks_the_driver_contracts_merchant_states():
    """The runner keeps its own copy of the vocabulary (it imports nothing of ours, above);
    this is what keeps the copy from drifting from the contract the merchants implement."""
    from fault_scenarios import evidence, judges
    from merchant_kit import driver_contract

    assert catalogue.MERCHANT_STATES == driver_contract.MERCHANT_STATES
    assert evidence.DEFINITE <= set(driver_contract.MERCHANT_STATES)
    assert set(judges._RANK) <= set(driver_contract.MERCHANT_STATES)
