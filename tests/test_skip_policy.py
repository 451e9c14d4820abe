"""tests/skip_policy.py: under CI a skip the list does not allow fails; every skip is counted and reported."""

from __future__ import annotations

import pytest
import skip_policy

pytest_plugins = ["pytester"]

TESTS = """
import pytest

def test_listed():
    pytest.skip("a kind cluster named 'kind' already exists")

def test_unlisted():
    pytest.skip("chromium is not installed")

@pytest.mark.skipif(True, reason="needs root")
def test_marked():
    pass

def test_passes():
    pass
"""
LISTED = """
[[skip]]
test = "test_some.py::test_listed"
when = "cluster named 'kind' already exists"
reason = "never touch a developer's cluster"
"""


@pytest.fixture
def policy(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """run(ci) -> the inner session's result and its skip report, with LISTED as the list."""
    listed = pytester.path / "allowed.toml"
    listed.write_text(LISTED)
    monkeypatch.setenv(skip_policy.LIST_ENV, str(listed))
    pytester.makepyfile(test_some=TESTS)

    def run(ci: bool, *args: str):
        report = pytester.path / f"skips-{ci}.txt"
        monkeypatch.setenv(skip_policy.REPORT_ENV, str(report))
        if ci:
            monkeypatch.setenv("CI", "1")
        else:
            monkeypatch.delenv("CI", raising=False)
        result = pytester.runpytest("-p", "skip_policy", "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)
        return result, report.read_text().splitlines()
    return run


def test_under_ci_only_listed_skips_pass(policy):
    result, report = policy(ci=True)
    result.assert_outcomes(passed=1, skipped=1, failed=1, errors=1)   # a skip in set-up becomes an error
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*skipped under CI, and tests/allowed_skips.toml does not allow it: chromium*",
                                 "skips: 1 taken, 2 turned into failures (CI:*"])
    assert report == ["skipped\ttest_some.py::test_listed\ta kind cluster named 'kind' already exists",
                      "FAILED\ttest_some.py::test_unlisted\tchromium is not installed",
                      "FAILED\ttest_some.py::test_marked\tneeds root"]


def test_outside_ci_every_skip_is_counted(policy):
    result, report = policy(ci=False)
    result.assert_outcomes(passed=1, skipped=3)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["skips: 3 taken, 0 turned into failures (not CI: every skip allowed)"])
    assert len(report) == 3 and all(line.startswith("skipped\t") for line in report)


def test_a_module_skipped_under_ci_fails_the_session(policy, pytester):
    pytester.makepyfile(test_module="import pytest\npytest.skip('no kubelet', allow_module_level=True)\n")
    result, report = policy(True, "test_module.py")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert report == ["FAILED\ttest_module.py\tno kubelet"]
    result, _ = policy(False, "test_module.py")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_a_malformed_list_is_refused_with_its_entry(tmp_path):
    bad = tmp_path / "allowed.toml"
    bad.write_text('[[skip]]\ntest = "x"\nwhen = "y"\n')
    with pytest.raises(pytest.UsageError, match="skip entry 1 must have exactly .* test, when and reason"):
        skip_policy.load(bad)
    bad.write_text('[[skip]]\ntest = "x"\nwhen = "("\nreason = "z"\n')
    with pytest.raises(pytest.UsageError, match="`when` is no regular expression"):
        skip_policy.load(bad)


def test_the_projects_list_loads_and_every_entry_has_a_reason():
    allowed = skip_policy.load(skip_policy.LIST)
    assert allowed and all(len(a.reason) > 40 for a in allowed)
    assert any(a.covers("tests/test_kind_real.py::test_seed_scenario",
                        "a kind cluster named 'kind' already exists; delete it") for a in allowed)
    assert not any(a.covers("tests/test_real_lab.py", "real Kubernetes cannot run here: missing kubelet")
                   for a in allowed)
