"""FT-Agent: search rules, multi-level diagnosis, planning, and the whole loop on a tiny model."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from tests_helpers import card, diagnose, propose

from actors.diagnostician import Diagnostician
from actors.planner import Planner
from actors.supervisor import RunSupervisor
from ftdojo import agents, backbones, config
from ftdojo.backbones import HeuristicBackbone
from ftdojo.errors import UserError
from ftdojo.report import profile
from ftdojo.messages import (
    Budget,
    Check,
    DataRecipe,
    EvalReport,
    Experiment,
    LLMUsage,
    Plan,
    PlanProposal,
    RunKey,
    SourceMapping,
    TrainConfig,
    TrainResult,
    ValidationReport,
    Verdict,
)
from ftdojo.search import best_node, better, noise_margin

CARD = card()


def _exp(i: str, score: float | None, losses=(2.0, 1.0), status="ok", src_losses=None, parse=0.0, cats=None, parent=None) -> Experiment:
    plan = Plan(plan_id=i, hypothesis="h", parent=parent,
                recipe=DataRecipe(sources=[SourceMapping(source="clean", prompt="{q}", answer="{a}"), SourceMapping(source="forum", prompt="{q}", answer="{a}")]),
                train=TrainConfig(steps=100, lr=1e-3))
    dev = None if score is None else EvalReport(split="dev", score=score, n=100, per_category=cats or {"a": score, "b": score}, parse_failure_rate=parse, errors=[])
    tr = TrainResult(plan_id=i, status="ok", losses=list(losses), steps=len(losses), source_losses=src_losses or {}, checkpoint="/c")
    return Experiment(id=i, parent=parent, plan=plan, train=tr if status == "ok" else None, dev=dev, status=status)


def test_best_node_respects_direction_and_dev_noise() -> None:
    a, b, c = _exp("a", 0.50), _exp("b", 0.53), _exp("c", 0.70)
    assert noise_margin(a.dev) == pytest.approx(0.05)
    assert best_node([a, b], "max").id == "a"  # +3 points on 100 items is noise
    assert best_node([a, b, c], "max").id == "c"
    assert best_node([c, a], "min").id == "a"
    assert best_node([_exp("x", None, status="failed")], "max") is None
    assert better(0.2, 0.1, "min") is False and better(0.1, 0.2, "min") is True
    # probes (a short fit on 30 items) are compared among themselves, and a later one must win by two errors
    probe = Plan(plan_id="p", hypothesis="h", recipe=a.plan.recipe, train=TrainConfig(steps=24), probe=True)
    p0, p1, p2 = (e.model_copy(update={"plan": probe, "dev": e.dev.model_copy(update={"n": 30})}) for e in (_exp("p0", 0.167), _exp("p1", 0.267), _exp("p2", 0.433)))
    assert best_node([p0, p1], "max", probes=True).id == "p0"  # +10 points: one error (6.8) but not two
    assert best_node([p0, p1, p2], "max", probes=True).id == "p2" and best_node([p0, a, p2], "max").id == "a"


def test_diagnostician_reads_all_three_levels() -> None:
    best = _exp("it0", 0.60)
    exp = _exp("it1", 0.30, losses=[2.0] * 5 + [1.0] * 5 + [0.5] * 5, src_losses={"clean": 0.20, "forum": 0.95, "drills": 0.25},
               parse=0.25, cats={"a": 0.5, "b": 0.1}, parent="it0")
    fb = diagnose(Diagnostician(), exp, best, best, CARD)
    by_code = {f.code: f for f in fb.findings}
    assert by_code["suspected_noise"].level == "data" and by_code["suspected_noise"].message.startswith("forum")
    assert "clean" not in {f.message.split(":")[0] for f in fb.findings if f.code == "suspected_noise"}
    assert by_code["underfit"].level == "training"
    assert {"format_errors", "content_errors", "weak_category", "regression"} <= set(by_code)
    assert fb.decision == "branch"
    rising = _exp("it2", 0.6, losses=[1.0, 1.2, 1.5, 2.0, 3.0])
    assert "diverged" in {f.code for f in diagnose(Diagnostician(), rising, None, None, CARD).findings}


def test_scalar_feedback_ablation_sees_only_the_score() -> None:
    fb = diagnose(Diagnostician(scalar=True), _exp("it1", 0.3, src_losses={"clean": 0.1, "forum": 0.9}), _exp("it0", 0.6), None, CARD)
    assert [f.code for f in fb.findings] == ["score"] and fb.decision == "branch"


def test_heuristic_planner_drops_noisy_source_and_fixes_rejections() -> None:
    pol, planner = HeuristicBackbone(), Planner(HeuristicBackbone())
    first = _exp("it0", 0.5, src_losses={"clean": 0.2, "forum": 0.9})
    first = first.model_copy(update={"feedback": diagnose(Diagnostician(), first, None, None, CARD)})
    plan = propose(planner, CARD, [first], TrainConfig(), steps_left=80)
    assert plan.parent == "it0" and [m.source for m in plan.recipe.sources] == ["clean"]
    assert plan.train.steps == 80  # clipped to the budget left
    rejected = first.model_copy(update={
        "id": "it1", "status": "rejected", "dev": None,
        "validation": ValidationReport(plan_id="it1", checks=[Check(name="truncation", status="fail", reason="r"), Check(name="learning_rate", status="fail", reason="r")]),
        "plan": first.plan.model_copy(update={"train": TrainConfig(max_length=32, lr=5.0)}),
    })
    train = asyncio.run(pol.propose(CARD, [first, rejected], first, TrainConfig())).train
    assert train.max_length == 64 and train.lr == 1e-3


def test_training_longer_continues_the_parents_adapter_and_a_changed_plan_starts_fresh() -> None:
    planner = Planner(HeuristicBackbone())
    falling = _exp("it0", 0.5, losses=[2.0, 1.6, 1.2, 0.9, 0.7, 0.5])
    falling = falling.model_copy(update={"feedback": diagnose(Diagnostician(), falling, None, None, CARD)})
    assert "underfit" in {f.code for f in falling.feedback.findings}
    plan = propose(planner, CARD, [falling], TrainConfig(), steps_left=80)
    assert plan.parent == "it0" and plan.train.init == "parent" and plan.train.steps == 80
    assert plan.recipe == falling.plan.recipe  # same data: only the continuation is new
    noisy = _exp("it1", 0.5, src_losses={"clean": 0.2, "forum": 0.9}, parent="it0")
    noisy = noisy.model_copy(update={"plan": noisy.plan.model_copy(update={"train": TrainConfig(init="parent")})})
    noisy = noisy.model_copy(update={"feedback": diagnose(Diagnostician(), noisy, None, None, CARD)})
    changed = propose(planner, CARD, [noisy], TrainConfig(), steps_left=80)
    assert [m.source for m in changed.recipe.sources] == ["clean"] and changed.train.init == "base"
    first = propose(planner, CARD, [], TrainConfig(init="parent"), steps_left=80)
    assert first.parent is None and first.train.init == "base"  # nothing to continue yet


def test_linear_ablation_continues_from_the_last_node() -> None:
    good, worse = _exp("it0", 0.8), _exp("it1", 0.2, parent="it0")
    assert propose(Planner(HeuristicBackbone(), linear=True), CARD, [good, worse], TrainConfig(), 100).parent == "it1"
    assert propose(Planner(HeuristicBackbone()), CARD, [good, worse], TrainConfig(), 100).parent == "it0"


def _run(agent: str, tmp_path, task: str = "math-linear", profile_overrides=()):
    prof = config.load_profile("tiny", list(profile_overrides))
    key = RunKey(task=task, agent=agent, seed=0, profile="tiny", config_hash="0" * 16)
    return asyncio.run(RunSupervisor(key, config.load_agent(agent), prof, str(tmp_path / agent)).run())


def test_a_record_names_the_code_its_run_started_with(math_domain, tmp_path, monkeypatch) -> None:
    """A tree edited while a run is going (a developer's checkout) must not relabel the run: the record's
    ``code_version`` is taken when the run starts, as its key's is."""
    import actors.supervisor as supervisor
    from ftdojo.dojo import Referee

    tree = {"version": "started-with"}
    monkeypatch.setattr(supervisor, "run_code_version", lambda domain: tree["version"])
    finalize = Referee.finalize

    def edited_meanwhile(self, final):  # the sealed test evaluation: well into the run
        tree["version"] = "edited-later"
        return finalize(self, final)

    monkeypatch.setattr(Referee, "finalize", edited_meanwhile)
    rec = _run("zero-shot", tmp_path)
    assert rec.test is not None and tree["version"] == "edited-later" and rec.code_version == "started-with"


def test_ft_agent_iterates_with_trace_and_finalizes_best_by_dev(math_domain, tmp_path) -> None:
    rec = _run("ft-agent", tmp_path)
    assert rec.status == "ok" and len(rec.experiments) >= 2
    for e in rec.experiments:
        assert e.feedback is not None and e.validation is not None and e.feedback.decision in {"continue", "branch", "stop"}
    assert rec.experiments[0].plan.recipe.sources[0].rationale  # reasoning traces first
    best = best_node(rec.experiments, "max")
    assert rec.final.checkpoint == best.train.checkpoint and not rec.fallback_to_base
    assert rec.usage.train_steps <= 100
    continued = [e for e in rec.experiments if e.plan.train.init == "parent"]
    assert continued and all(e.status == "ok" and e.parent in {x.id for x in rec.experiments} for e in continued)
    # It searched before spending the budget: probes from the base, scored on the dev slice only, and the
    # first full fit continues the best of them
    probes = [e for e in rec.experiments if e.plan.probe]
    full = [e for e in rec.experiments if not e.plan.probe]
    roots = [e for e in probes if e.parent is None]
    assert len(roots) >= 2 and all(e.plan.train.init == "base" for e in roots)
    assert all(e.plan.train.init == "parent" and e.parent in {r.id for r in roots} for e in probes if e not in roots)
    items = config.load_profile("tiny").budget.probe_items
    assert all(e.dev.n == items for e in probes) and all(e.dev.n > items for e in full)
    assert len({e.plan.recipe.model_dump_json() for e in roots}) == len(roots)  # each probe from the base tries other data
    assert full[0].parent in {e.id for e in probes} and full[0].plan.train.init == "parent"
    if len(probes) == len(roots):  # no continuation: the full fit continues the best probe
        assert full[0].parent == best_node(probes, "max", probes=True).id
    assert full[0].plan.recipe == rec.experiments[[e.id for e in rec.experiments].index(full[0].parent)].plan.recipe
    assert rec.final.checkpoint in {e.train.checkpoint for e in full}  # the final model is a full fit, never a probe
    # The run's wall time adds up: every phase has a duration, what no event covers is small bookkeeping.
    raw = rec.model_dump(mode="json")
    phases = profile.breakdown(raw)
    assert {"startup", "plan", "curate", "checks", "smoke_train", "train", "evaluate", "feedback", "release", "test",
            "leak_check"} <= set(phases)
    assert sum(phases.values()) == pytest.approx(rec.wall_s)
    assert all(v >= 0 for v in phases.values())  # phases are sequential inside the run, so none is counted twice
    assert phases["unaccounted"] < rec.wall_s / 2
    assert 0 < profile.work_share(raw) < 1
    assert set(rec.peak_rss_mb) == {"supervisor"} and rec.peak_rss_mb["supervisor"] > 100  # in-process peers share it
    # the bound is recorded and checked against each process (not yet met: issue 26 item 4 is open)
    assert rec.memory_bound_mb is not None and rec.memory_bound_mb > 240
    assert rec.over_memory_bound == [k for k, v in rec.peak_rss_mb.items() if v > rec.memory_bound_mb]
    rec_file = tmp_path / "run.json"
    rec_file.write_text(rec.model_dump_json())
    out = subprocess.run([sys.executable, "bench/phases.py", str(rec_file), str(rec_file)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, check=True).stdout
    assert "smoke_train" in out and "unaccounted" in out and "peak memory: supervisor" in out and "memory bound" in out and f"{profile.work_share(raw):.1%}" in out and "2 runs: median" in out


def test_a_plan_that_continues_a_missing_parent_is_rejected_by_name(math_domain, tmp_path) -> None:
    prof = config.load_profile("tiny")
    key = RunKey(task="math-linear", agent="naive-sft", seed=0, profile="tiny", config_hash="0" * 16)
    sup = RunSupervisor(key, config.load_agent("naive-sft"), prof, str(tmp_path / "w"))
    mapping = SourceMapping(source="algebra_drills", prompt="Solve for x: {equation}", answer="Answer: {solution}")
    plan = Plan(plan_id="it0", hypothesis="h", parent="it9", recipe=DataRecipe(sources=[mapping]), train=TrainConfig(init="parent"))
    with pytest.raises(UserError, match=r"train\.init='parent'.*parent='it9'"):
        sup._init_adapter(plan)
    assert sup._init_adapter(plan.model_copy(update={"train": TrainConfig()})) is None


class BrokenPlans:
    """A planner backbone that only emits broken plans, one kind per iteration."""

    def __init__(self) -> None:
        self.i = 0

    def usage(self) -> LLMUsage:
        return LLMUsage()

    async def diagnose(self, exp, rules) -> Verdict:
        return Verdict(decision=rules.decision)

    async def propose(self, card, history, parent, base, left=None, lookup=None):
        good = SourceMapping(source="algebra_drills", prompt="Solve for x: {equation}", answer="{solution}")
        cases = [
            (DataRecipe(sources=[good.model_copy(update={"answer": "x is {solution}"})]), base, "wrong format"),
            (DataRecipe(sources=[good]), base.model_copy(update={"max_length": 30}), "truncating max length"),
            (DataRecipe(sources=[good]), base.model_copy(update={"lr": 3.0}), "diverging lr"),
            (DataRecipe(sources=[good.model_copy(update={"where": {"form": "cubic"}})]), base, "empty"),
            (DataRecipe(sources=[good]), base.model_copy(update={"target_modules": ["c_attn"]}), "missing module"),
        ]
        recipe, train, why = cases[self.i % len(cases)]
        self.i += 1
        return PlanProposal(hypothesis=why, recipe=recipe, train=train)


def test_fault_injection_every_broken_plan_is_caught_before_training(math_domain, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(backbones, "make", lambda cfg, tokens=0, data_model=None, tree=True: BrokenPlans())
    rec = _run("ft-agent", tmp_path, profile_overrides=["budget.max_iterations=3"])
    assert len(rec.experiments) == 2 * 3 + agents.MAX_PROBES  # the proposals' cap, none trained
    assert all(e.status == "rejected" and e.train is None for e in rec.experiments)
    caught = [{c.name for c in e.validation.checks if c.status == "fail"} for e in rec.experiments]
    assert [c & {"targets_parseable", "truncation", "learning_rate", "non_empty", "target_modules"} for c in caught[:5]] == [
        {"targets_parseable"}, {"truncation"}, {"learning_rate"}, {"non_empty"}, {"target_modules"}]
    assert rec.usage.train_steps == 0
    assert rec.fallback_to_base and rec.final.checkpoint is None and rec.test is not None


def test_no_failfast_ablation_trains_without_validation(math_domain, tmp_path) -> None:
    rec = _run("ft-agent-no-failfast", tmp_path, profile_overrides=["budget.max_iterations=1"])
    assert rec.experiments[0].validation is None and rec.experiments[0].train is not None


def test_random_search_runs_and_picks_best(math_domain, tmp_path) -> None:
    rec = _run("random-search", tmp_path, profile_overrides=["budget.max_iterations=2", "budget.max_train_steps=20"])
    assert rec.status == "ok" and 1 <= len(rec.experiments) <= 2
    best = best_node(rec.experiments, "max")
    assert (rec.final.checkpoint if best else None) == (best.train.checkpoint if best else None)
    assert rec.fallback_to_base == (best is None)


def test_no_built_in_task_offers_a_verifier_and_a_recipe_asking_for_one_is_refused(math_domain, tmp_path) -> None:
    """The generator's answer check is the suite's oracle, not the agent's: no built-in card announces a
    verifier, and a recipe that asks for one gets one line naming the field, the task and what to use."""
    from actors.curator import Curator, RecipeError
    from ftdojo import registry
    from ftdojo.dojo import DojoEnv, EnvHandle

    builtin = [t for t in registry.all_tasks().values() if registry.builtin_offline(registry.get_domain(t.domain))]
    assert len(builtin) >= 13
    assert not any(DojoEnv(t.id, "tiny-random", Budget()).describe().verifier for t in builtin)
    assert not any(d.verifier for d in registry.domains().values())  # the paper's tasks and specs neither
    env = EnvHandle(DojoEnv("math-linear", "tiny-random", Budget()))
    forum = SourceMapping(source="homework_forum", prompt="{question}", answer="{accepted_reply}")
    plan = Plan(plan_id="v", hypothesis="h", recipe=DataRecipe(sources=[forum], verify=True), train=TrainConfig())
    with pytest.raises(RecipeError, match=r"^recipe field verify: task math-linear offers no answer verifier.*set verify: false"):
        asyncio.run(Curator(env, str(tmp_path)).curate(plan))


def test_a_task_that_offers_a_verifier_lets_the_curator_drop_what_it_rejects(math_domain, tmp_path, monkeypatch) -> None:
    """A task whose practitioners have a check (here the math oracle, handed over as a verifier to make the
    point measurable) gets the ``verify`` filter: it drops the forum's wrong labels and nothing else."""
    import dataclasses

    from actors import curator
    from ftdojo import dojo
    from ftdojo.dojo import DojoEnv, EnvHandle

    offered = dataclasses.replace(math_domain, verifier=math_domain.oracle)
    for module in (curator, dojo):
        monkeypatch.setattr(module, "get_domain", lambda name: offered)
    env = EnvHandle(DojoEnv("math-linear", "tiny-random", Budget()))
    forum = SourceMapping(source="homework_forum", prompt="{question}", answer="{accepted_reply}")
    plan = lambda verify: Plan(plan_id=f"v{verify}", hypothesis="h", recipe=DataRecipe(sources=[forum], verify=verify), train=TrainConfig())  # noqa: E731
    raw = asyncio.run(curator.Curator(env, str(tmp_path)).curate(plan(False)))
    clean = asyncio.run(curator.Curator(env, str(tmp_path)).curate(plan(True)))
    share = clean.dropped["verifier"] / raw.n_examples
    assert 0.3 < share < 0.5  # the forum's wrong-label rate is 40%
    assert clean.n_examples == raw.n_examples - clean.dropped["verifier"]


def test_the_profiles_resources_reach_the_trainer_and_its_record(math_domain, tmp_path) -> None:
    """Precision is the profile's (resources.precision), not the plan's: the profile asks for the opposite of
    what ``auto`` would pick on this CPU, training follows the profile, and the iteration's record says so."""
    from ftdojo import training

    want = "fp32" if training.use_bf16("auto", "cpu") else "bf16"
    rec = _run("naive-sft", tmp_path, profile_overrides=[f"resources.precision={want}", "train.steps=4"])
    t = rec.experiments[0].train
    assert t is not None and t.status == "ok" and t.device == "cpu" and t.workers == 0
    assert t.bf16 == (want == "bf16") != training.use_bf16("auto", "cpu")
    assert rec.experiments[0].plan.train.steps == 4


def test_a_new_policy_is_one_class_and_a_yaml_and_gets_exactly_its_peers(math_domain, tmp_path) -> None:
    """No supervisor edit: a policy registered here runs from its YAML; the supervisor spawns only the peers
    it declares, and a call that needs an undeclared peer fails that iteration with the reason."""
    from ftdojo import agents

    @agents.policy("probe-twice")
    class ProbeTwice:
        def __init__(self, cfg) -> None:
            self.cfg = cfg

        def peers(self):
            return frozenset()

        async def run(self, ctx):
            base = agents.Candidate(base_model=ctx.card.base_model)
            await ctx.evaluate(base)
            await ctx.evaluate(base)
            self.exp = await ctx.iterate(Plan(plan_id="x", hypothesis="h", recipe=DataRecipe(sources=[]), train=ctx.train))
            return None

    try:
        yaml_path = tmp_path / "probe.yaml"
        yaml_path.write_text("name: probe\npolicy: probe-twice\n")
        key = RunKey(task="math-linear", agent="probe", seed=0, profile="tiny", config_hash="0" * 16)
        sup = RunSupervisor(key, agents.load(str(yaml_path)), config.load_profile("tiny"), str(tmp_path / "w"))
        rec = asyncio.run(sup.run())
        assert rec.usage.dev_evals == 2 and rec.fallback_to_base
        assert all(getattr(sup, p) is None for p in ("curator", "trainer", "validator", "planner", "diagnostician"))
        (exp,) = rec.experiments
        assert exp.status == "rejected" and "does not declare it in peers()" in exp.error and "curator" in exp.error
    finally:
        agents.POLICIES.pop("probe-twice", None)


def test_the_reference_trains_once_on_traces_and_clean_sources_over_the_whole_step_budget(math_domain, tmp_path) -> None:
    """The suite's reference: worked reasoning with its rationale (and, on a task whose answer the input
    shows, the clean sources in the task's format, weighted down), not the noisy forum, the crawl or the
    irrelevant facts; one fit with every step the budget allows; a task whose domain marks no clean or traces source has no reference, said in one line."""
    from ftdojo import recipes, registry
    from ftdojo.dojo import DojoEnv
    from ftdojo.errors import UserError

    rec = _run("reference", tmp_path)
    assert rec.status == "ok" and len(rec.experiments) == 1 and not rec.fallback_to_base
    (exp,) = rec.experiments
    prof = config.load_profile("tiny")
    per_iteration = config.agent_train(config.load_agent("reference"), prof).steps
    assert exp.plan.train.steps == min(prof.budget.max_train_steps, prof.budget.max_iterations * per_iteration) > per_iteration
    assert rec.usage.train_steps == exp.plan.train.steps
    used = {m.source: m for m in exp.plan.recipe.sources}
    assert set(used) == {"worked_solutions"} and used["worked_solutions"].rationale  # a computation: traces only
    chem = registry.get_domain("chemistry")
    roles = {s.name: s.role for s in chem.sources}
    rings = {m.source: m for m in recipes.reference(DojoEnv("chem-rings", "tiny-random", Budget()).describe(), roles).sources}
    assert {roles[s] for s in rings} == {"traces", "clean"} and min(m.weight for m in rings.values()) == recipes.CLEAN_WEIGHT
    assert exp.plan.recipe.require_parseable and exp.plan.recipe.decontaminate and not exp.plan.recipe.verify
    with pytest.raises(UserError, match=r"^agent reference: task t has no reference recipe"):
        recipes.reference(card(), {})


def _source(name: str, rationale: bool = False):
    from ftdojo.messages import SourceInfo

    return SourceInfo(name=name, format="jsonl", fields={"q": "q", "a": "a", "w": "w"}, rows=100, readme="r", samples=[],
                      suggested_prompt="{q}", suggested_answer="Answer: {a}", suggested_rationale="{w}" if rationale else None)


SEARCH_CARD = card(sources=[_source("notes", rationale=True), _source("clean"), _source("forum")],
                   budget=Budget(max_iterations=2, max_train_steps=160, max_dev_evals=5, probe_items=30))


def _left(steps: int = 160, evals: int = 5, iterations: int = 2):
    from ftdojo.messages import Remaining

    return Remaining(train_steps=steps, dev_evals=evals, wall_s=100.0, iterations=iterations)


def _scored(plan: Plan, i: str, score: float, n: int = 30, src_losses=None, decision="continue") -> Experiment:
    from ftdojo.messages import Feedback, Finding

    plan = plan.model_copy(update={"plan_id": i})
    dev = EvalReport(split="dev", score=score, n=n, per_category={"a": score}, parse_failure_rate=0.0, errors=[])
    tr = TrainResult(plan_id=i, status="ok", losses=[2.0, 1.0], steps=plan.train.steps, source_losses=src_losses or {}, checkpoint=f"/c/{i}")
    noisy = [Finding(level="data", code="suspected_noise", message=f"{s}: fit loss high") for s, v in (src_losses or {}).items() if v > 1]
    return Experiment(id=i, parent=plan.parent, plan=plan, train=tr, dev=dev, status="ok",
                      feedback=Feedback(plan_id=i, findings=noisy, decision=decision))


def test_the_heuristic_probes_data_choices_before_the_budget_and_continues_the_winner() -> None:
    """Probes first (traces alone, traces beside the answer-only sources), each a short fit from the base model
    scored on dev's first items. A mixture that beats the traces is continued for one more probe: if it gains
    no more than the noise it has plateaued and the full fit goes to the traces; while it rises it is tried once
    more without the source its own fit loss says is noise, and the full fit continues the best of those."""
    from ftdojo.backbones.heuristic import probe_steps

    planner, base = Planner(HeuristicBackbone()), TrainConfig(steps=80, lr=1e-3)

    def plan(history, left):
        from ftdojo.messages import ProposeRequest

        return asyncio.run(planner.propose(ProposeRequest(card=SEARCH_CARD, history=history, base=base, steps_left=left.train_steps, left=left)))

    p0 = plan([], _left())
    assert p0.probe and p0.parent is None and p0.train.init == "base" and p0.train.steps == probe_steps(SEARCH_CARD.budget, 80) == 24
    assert [m.source for m in p0.recipe.sources] == ["notes"] and p0.recipe.sources[0].rationale
    e0 = _scored(p0, "it0", 0.30)
    p1 = plan([e0], _left(136, 4))
    assert p1.probe and p1.parent is None and {m.source: m.weight for m in p1.recipe.sources} == {"notes": 1.0, "clean": 0.5, "forum": 0.5}
    assert all(m.rationale is None for m in p1.recipe.sources if m.source != "notes")
    e1 = _scored(p1, "it1", 0.60, src_losses={"notes": 0.2, "clean": 0.4, "forum": 1.9})  # the forum's fit loss says noise
    # the mixture tied with the traces alone (within 2 SE): the full fit continues the traces with every step left
    tie = _scored(p1, "it1", 0.40, src_losses={"notes": 0.2, "clean": 0.4, "forum": 1.9})
    after_tie = plan([e0, tie], _left(112, 3))
    assert not after_tie.probe and after_tie.parent == "it0" and after_tie.train.steps == 112
    # the mixture overturned the traces: its adapter continues one more probe on the same data
    p2 = plan([e0, e1], _left(112, 3))
    assert p2.probe and p2.parent == "it1" and p2.train.init == "parent" and p2.train.steps == 24 and p2.recipe == p1.recipe
    # it gained less than one standard error of its 60% on 30 items (8.9 points): plateaued, so the traces get the budget
    flat = _scored(p2, "it2", 0.667)
    to_traces = plan([e0, e1, flat], _left(88, 2))
    assert not to_traces.probe and to_traces.parent == "it0" and to_traces.recipe == p0.recipe and to_traces.train.steps == 88
    assert "plateaued" in to_traces.hypothesis
    # it rose: the refinement from the leader's own fit losses, continuing the leader's adapter
    e2 = _scored(p2, "it2", 0.80)
    p3 = plan([e0, e1, e2], _left(88, 2))
    assert p3.probe and p3.parent == "it1" and p3.train.init == "parent" and [m.source for m in p3.recipe.sources] == ["notes", "clean"]
    assert "forum" in p3.hypothesis
    # a refinement within 2 SE of the continuation does not replace it; one that beats it does; either way the
    # noise its own fit reports (clean, here) starts no second refinement
    close = _scored(p3, "it3", 0.90, src_losses={"notes": 0.2, "clean": 1.5})
    after_close = plan([e0, e1, e2, close], _left(64, 2))  # the budget would afford another probe
    assert not after_close.probe and after_close.parent == "it2"
    e3 = _scored(p3, "it3", 0.97, src_losses={"notes": 0.2, "clean": 1.5})
    assert not plan([e0, e1, e2, e3], _left(64, 2)).probe
    full = plan([e0, e1, e2, e3], _left(64, 1))
    assert not full.probe and full.parent == "it3" and full.train.init == "parent" and full.recipe == e3.plan.recipe
    assert full.train.steps == 64  # the rest of the budget: no stub of a fit is left over
    roomy = plan([e0, e1, e2, e3], _left(400, 2))
    assert roomy.train.steps == 80 and plan([e0, e1, e2, e3], _left(400, 1)).train.steps == 400  # the last scorable fit takes the rest
    # a continuation at the metric's best score leaves a refinement nothing to win: the full fit continues it
    perfect = _scored(p2, "it2", 1.0)
    assert plan([e0, e1, perfect], _left(88, 2)).parent == "it2" and not plan([e0, e1, perfect], _left(88, 2)).probe
    # without noise in the leader's fit there is no refinement: the full fit continues the rising continuation
    clean1 = _scored(p1, "it1", 0.60)
    assert plan([e0, clean1, e2], _left(88, 2)).parent == "it2"
    # without the budget for a continuation the leader gets the full fit
    assert plan([e0, e1], _left(50, 2)).parent == "it1"
    # a probe needs its dev evaluation and leaves room for a full fit; without that the first plan is a full fit
    assert not plan([], _left(evals=1)).probe and not plan([], _left(steps=40)).probe
    # the linear ablation plans no probes
    linear = Planner(HeuristicBackbone(tree=False), linear=True)
    from ftdojo.messages import ProposeRequest

    first = asyncio.run(linear.propose(ProposeRequest(card=SEARCH_CARD, history=[], base=base, steps_left=160, left=_left())))
    assert not first.probe and [m.source for m in first.recipe.sources] == ["notes"]


def test_continue_branch_and_stop_each_change_what_happens_next() -> None:
    """continue builds on the last fit even when it is within the noise of the best; branch goes back to the
    best node and tries the next-best probe's data; stop ends the run; a parent the backbone names must be a
    trained node, said by name."""
    from actors.diagnostician import rules_decision
    from ftdojo.backbones import BackboneError

    probe = Plan(plan_id="p", hypothesis="h", recipe=DataRecipe(sources=[SourceMapping(source="notes", prompt="{q}", answer="{a}")]),
                 train=TrainConfig(steps=24), probe=True)
    other = probe.model_copy(update={"recipe": DataRecipe(sources=[SourceMapping(source="clean", prompt="{q}", answer="{a}")])})
    full = Plan(plan_id="f", hypothesis="h", parent="it0", recipe=probe.recipe, train=TrainConfig(steps=80, init="parent"))
    e0, e1 = _scored(probe, "it0", 0.6), _scored(other, "it1", 0.5)
    e2 = _scored(full, "it2", 0.50, n=60)
    e3 = _scored(full.model_copy(update={"parent": "it2"}), "it3", 0.52, n=60, decision="continue")  # within noise of it2
    planner = Planner(HeuristicBackbone())
    assert planner.default_parent([e0, e1, e2, e3], "max").id == "it3"
    e3b = e3.model_copy(update={"feedback": e3.feedback.model_copy(update={"decision": "branch"})})
    assert planner.default_parent([e0, e1, e2, e3b], "max").id == "it2"  # the best full fit
    nxt = propose(planner, SEARCH_CARD, [e0, e1, e2, e3b], TrainConfig(steps=80), steps_left=60)
    assert nxt.parent == "it1" and nxt.train.init == "parent" and nxt.recipe == other.recipe  # the runner-up probe's data
    assert rules_decision(e2.model_copy(update={"dev": e2.dev.model_copy(update={"score": 1.0})}), set(), SEARCH_CARD) == "stop"
    assert rules_decision(e0.model_copy(update={"dev": e0.dev.model_copy(update={"score": 1.0})}), set(), SEARCH_CARD) == "continue"  # a probe's slice
    assert rules_decision(e2, {"regression"}, SEARCH_CARD) == "branch" and rules_decision(e2, set(), SEARCH_CARD) == "continue"

    class Names:
        transcript: list = []

        def usage(self) -> LLMUsage:
            return LLMUsage()

        async def propose(self, card, history, parent, base, left=None, lookup=None):
            return PlanProposal(hypothesis="h", recipe=probe.recipe, train=TrainConfig(init="parent"), parent=self.node)

    named = Names()
    named.node = "it1"
    assert propose(Planner(named), SEARCH_CARD, [e0, e1, e2], TrainConfig(), 60).parent == "it1"
    named.node = "base"
    fresh = propose(Planner(named), SEARCH_CARD, [e0, e1, e2], TrainConfig(), 60)
    assert fresh.parent is None and fresh.train.init == "base"
    named.node = "it9"
    with pytest.raises(BackboneError, match=r"plan parent 'it9' is not a trained experiment of this run \(trained: \['it0', 'it1', 'it2'\]\)"):
        propose(Planner(named), SEARCH_CARD, [e0, e1, e2], TrainConfig(), 60)

    # stop: FTAgent asks for nothing more once the diagnostician says stop
    from ftdojo import agents as agent_policies

    class Ctx:
        card, seed, train = SEARCH_CARD, 0, TrainConfig(steps=80)

        def __init__(self) -> None:
            self.exps: list[Experiment] = []

        async def usage(self):
            from ftdojo.messages import Usage

            return Usage(train_steps=sum(e.train.steps for e in self.exps), dev_evals=len(self.exps))

        async def propose(self, steps_left, prompt):
            return full.model_copy(update={"plan_id": f"it{len(self.exps)}", "parent": None})

        async def iterate(self, plan, validate=False):
            e = _scored(plan, plan.plan_id, 1.0, n=60)
            self.exps.append(e)
            return e

        async def diagnose(self, exp):
            return exp.model_copy(update={"feedback": exp.feedback.model_copy(update={"decision": rules_decision(exp, set(), SEARCH_CARD)})})

        async def history(self):
            return list(self.exps)

    ctx = Ctx()
    cand = asyncio.run(agent_policies.make(config.load_agent("ft-agent")).run(ctx))
    assert len(ctx.exps) == 1 and cand.checkpoint == "/c/it0"


def test_a_fit_is_not_trained_when_no_dev_evaluation_is_left_to_score_it(math_domain, tmp_path) -> None:
    rec = _run("naive-sft", tmp_path, profile_overrides=["budget.max_dev_evals=0"])
    (exp,) = rec.experiments
    assert exp.status == "failed" and exp.train is None and "dev_evals" in exp.error and rec.usage.train_steps == 0
