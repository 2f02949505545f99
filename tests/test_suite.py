"""The built-in suite: 13 tasks in 5 domains, each repository with clean, traces, noisy,
irrelevant and leak-trap sources; answers computed right; splits disjoint; leak traps caught."""

from __future__ import annotations

import random
import re

import pytest

from actors.supervisor import leaked
from ftdojo import datafiles, overlap, paths, repository, scoring
from ftdojo.dojo import DojoEnv, Referee
from ftdojo.messages import Budget
from ftdojo.tasking import Domain, SourceSpec, Suggestion, TaskSpec
from ftdojo.registry import builtin_offline, domains, get_domain
from tasks import biology, chemistry, finance, tableqa

NEW = ("chemistry", "tableqa", "finance", "biology")


def _csv_tables(rows) -> tuple[int, int]:
    """The CSV-rendered table questions, checked by rendering the table as the task does."""
    wrong = 0
    for r in rows[:300]:
        lines = r["table_csv"].splitlines()
        cols = lines[0].split(",")
        table = [dict(zip(cols, ln.split(","), strict=True)) for ln in lines[1:]]
        wrong += tableqa.solve(f"Table:\n{tableqa.render(cols, table)}Question: {r['question']}") != r["answer"]
    return min(len(rows), 300), wrong


def _price_windows(rows) -> tuple[int, int]:
    wrong = 0
    for r in rows[:300]:
        months, closes = r["months"].split("; "), [float(c) for c in r["closes"].split("; ")]
        change = "rise" if closes[-1] > closes[0] else "fall" if closes[-1] < closes[0] else "flat"
        wrong += (change, months[closes.index(max(closes))], months[closes.index(min(closes))]) != (
            r["change"], r["max_month"], r["min_month"])
        monthly = finance.series()[r["symbol"]]
        wrong += [p for m, p in monthly if m in months] != r["closes"].split("; ")  # the real closes
    return min(len(rows), 300), wrong


OWN_FORMAT = {"table_questions_csv": _csv_tables, "price_windows": _price_windows}
SOLVERS = {"chemistry": chemistry.solve, "tableqa": tableqa.solve, "finance": finance.solve, "biology": biology.solve}
TELLS = re.compile(r"noisy|noise|wrong|incorrect|leak|contaminat|test set|benchmark|irrelevant|unrelated|trap", re.IGNORECASE)


@pytest.fixture(scope="module")
def suite() -> dict:
    built = {k: d for k, d in domains().items() if builtin_offline(d)}  # the generated suite, not the dataset-backed specs
    for d in built.values():
        repository.materialize(d)
    return built


def _rows(d, src):
    return datafiles.read_rows(repository.raw_dir(d) / f"{src.name}.{src.format}", src.format)


def _split(d, t, which):
    return datafiles.read_items(repository.dev_path(t, d) if which == "dev" else repository.sealed_path(t, d))


def test_thirteen_tasks_in_five_domains_each_with_every_kind_of_source(suite) -> None:
    assert len(suite) == 5 and sum(len(d.tasks) for d in suite.values()) == 13
    for d in suite.values():
        roles = [s.role for s in d.sources]
        assert {"clean", "traces", "noisy", "irrelevant", "leak"} <= set(roles), d.name
        assert len({s.format for s in d.sources}) >= 2, d.name
        for t in d.tasks:
            assert t.description and t.answer_format and t.categories and t.metric in scoring.METRICS
            assert t.direction == "max" and t.dev_size > 0 and t.test_size > 0


def test_dataset_cards_do_not_say_which_source_is_noisy_or_leaky(suite) -> None:
    for d in suite.values():
        for s in d.sources:
            card = (repository.raw_dir(d) / f"{s.name}.md").read_text()
            assert not TELLS.search(card + " ".join(s.fields.values())), (d.name, s.name, TELLS.search(card))


@pytest.mark.parametrize("domain", NEW)
def test_generators_are_deterministic_and_answers_are_computed_from_the_input(domain) -> None:
    d = get_domain(domain)
    for t in d.tasks:
        a = [t.generate(random.Random(f"s{i}")) for i in range(40)]
        b = [t.generate(random.Random(f"s{i}")) for i in range(40)]
        assert a == b and len({i["input"] for i in a}) >= 30, t.id
        for item in a:
            assert SOLVERS[domain](item["input"]) == item["answer"], item
            assert item["category"] in t.categories, item
            assert d.oracle(item["input"], item["answer"]) is True
            assert scoring.extract(t.render_answer(item["answer"]), t.answer_pattern) is not None, (t.id, item["answer"])
            assert scoring.metric(t.metric)(item["answer"], item["answer"], t.tolerance) == 1.0


def test_new_domains_materialise_to_the_same_bytes_in_two_homes(tmp_path, monkeypatch) -> None:
    digests = []
    for home in ("one", "two"):
        monkeypatch.setenv("FTDOJO_HOME", str(tmp_path / home))
        files = []
        for name in NEW:
            d = get_domain(name)
            raw = repository.materialize(d)
            files += sorted(p for p in raw.parent.rglob("*") if p.is_file() and p.name != ".complete")
            files += [repository.sealed_path(t, d) for t in d.tasks]
        digests.append([(p.name, paths.sha256_file(p)) for p in files])
    assert digests[0] == digests[1] and len(digests[0]) >= 4 * 10


def test_dev_and_test_never_overlap_and_only_the_leak_trap_holds_test_items(suite) -> None:
    for d in suite.values():
        held = []
        for t in d.tasks:
            dev, test = _split(d, t, "dev"), _split(d, t, "test")
            assert len(dev) == t.dev_size and len(test) == t.test_size
            idx = overlap.OverlapIndex([i["input"] for i in test])
            assert overlap.contamination_rate([i["input"] for i in dev], idx) == 0.0, t.id
            held += [i["input"] for i in dev + test]
        index = overlap.OverlapIndex(held)
        for s in d.sources:
            rows = _rows(d, s)
            texts = [" ".join(str(v) for v in r.values()) for r in rows]
            rate = overlap.contamination_rate(texts, index)
            if s.role == "leak":
                assert rate > 0.3, (d.name, s.name, rate)
            else:
                assert rate == 0.0, (d.name, s.name, rate)


def test_no_source_but_the_leak_trap_names_a_compound_that_a_dev_or_test_item_asks_about(suite) -> None:
    """Beyond the 8-gram rule: a compound table row or a tutor answer about a held-out molecule
    would hand over its answer in another wording."""
    d = suite["chemistry"]
    named = re.compile(r"molecule of (.+), molecular formula|SMILES (\S+) contain\?")

    def compounds(texts) -> set[str]:
        return {m.group(1) or m.group(2) for t in texts if (m := named.search(t))}

    held = compounds(i["input"] for t in d.tasks for i in _split(d, t, "dev") + _split(d, t, "test"))
    assert len(held) > 500
    for s in d.sources:
        rows = _rows(d, s)
        seen = {r["name"] for r in rows} | {r["smiles"] for r in rows} if s.name == "compound_registry" else compounds(
            str(v) for r in rows for v in r.values())
        if s.role == "leak":
            assert len(seen & held) > 100, s.name
        else:
            assert not seen & held, (s.name, sorted(seen & held)[:3])
            assert len(seen) > 100 or s.role == "irrelevant", s.name  # the check saw compounds


def test_the_repository_drops_rows_that_a_card_mapping_turns_into_a_held_out_question(tmp_path, monkeypatch) -> None:
    """A builder checks its own question text, but a row drawn for one task can be another task's
    sealed question once mapped as the card suggests (biology's annotation table did this)."""
    monkeypatch.setenv("FTDOJO_HOME", str(tmp_path))
    ask = "How many vowels are in the word {word}?"

    def generate(rng: random.Random) -> dict:
        w = "".join(rng.choice("abcdefghij") for _ in range(9))
        return {"input": ask.format(word=w), "answer": str(sum(c in "aei" for c in w)), "category": "w"}

    def words(rng: random.Random, reserved) -> list[dict]:  # ignores the mapping: every held-out word, and fresh ones
        held = list(dict.fromkeys(re.search(r"word (\w+)\?", q).group(1) for q in reserved.inputs))
        return [{"word": w} for w in held + ["zzzzzzzzz", "yyyyyyyyy"]]

    task = TaskSpec(id="vowels", domain="toy", description="d", instruction="i", answer_format="f",
                    answer_template="Answer: {answer}", answer_pattern=r"Answer:\s*(\d+)", metric="exact",
                    categories=("w",), generate=generate, dev_size=5, test_size=5)
    mapping = {"vowels": Suggestion(ask, "")}
    domain = Domain(name="toy", description="d", tasks=(task,), origin=__name__, sources=tuple(
        SourceSpec(name=role, format="jsonl", readme="r", fields={"word": "w"}, build=words, per_task=mapping, role=role)
        for role in ("clean", "other")))
    repository.materialize(domain)
    kept = {s.role: [r["word"] for r in _rows(domain, s)] for s in domain.sources}
    assert kept["clean"] == ["zzzzzzzzz", "yyyyyyyyy"]  # the ten dev/test words are gone
    assert len(kept["other"]) == 12  # a user's own file is kept whole: the referee's overlap check flags its leaks


@pytest.mark.parametrize("domain", NEW)
def test_noisy_source_is_wrong_at_a_rate_and_clean_sources_are_right(suite, domain) -> None:
    d = suite[domain]
    for s in d.sources:
        if s.role not in ("clean", "traces", "noisy"):
            continue
        checked = wrong = 0
        for t in d.tasks:
            hint = s.suggestion(t.id)
            if not (hint.prompt and hint.answer):
                continue
            for r in _rows(d, s)[:300]:
                answer = hint.answer.format(**r).strip()
                ok = d.oracle(hint.prompt.format(**r), answer) if answer else None  # the curator drops empty answers
                if ok is None:
                    continue  # a row about another task
                checked += 1
                wrong += ok is False
        if s.name in OWN_FORMAT:
            checked, wrong = OWN_FORMAT[s.name](_rows(d, s))
        assert checked >= 100, (s.name, checked)
        if s.role == "noisy":
            assert 0.25 < wrong / checked < 0.55, (s.name, wrong / checked)
        else:
            assert wrong == 0, (s.name, wrong)


def test_cards_suggest_mappings_per_task(suite) -> None:
    group = DojoEnv("chem-group", "tiny-random", Budget()).describe()
    rings = DojoEnv("chem-rings", "tiny-random", Budget()).describe()
    by = {s.name: s for s in group.sources}
    assert by["compound_registry"].suggested_prompt is None  # no template gives a four-option question
    assert {s.name: s for s in rings.sources}["compound_registry"].suggested_answer == "{ring_count}"
    assert by["chem_quiz_crawl"].suggested_prompt is None and by["chem_quiz_crawl"].rows > 100


@pytest.mark.parametrize("domain", sorted(["math", *NEW]))
def test_every_leak_trap_is_flagged_when_used_even_in_a_small_share(suite, domain) -> None:
    d = suite[domain]
    trap = next(s for s in d.sources if s.role == "leak")
    clean = [s for s in d.sources if s.role in ("clean", "traces")]
    for t in d.tasks:
        ref = Referee(t.id)
        inputs, sources = [], []
        for s in clean:
            hint = s.suggestion(t.id)
            if hint.prompt:
                rows = _rows(d, s)
                inputs += [hint.prompt.format(**r) for r in rows]
                sources += [s.name] * len(rows)
        honest = ref.leak_check(inputs, sources)
        assert not leaked(honest) and honest["test"] == 0.0, (t.id, honest)
        taken = [r["question"] for r in _rows(d, trap)][:60]  # 60 crawled rows among thousands of clean ones
        leak = ref.leak_check(inputs + taken, sources + [trap.name] * len(taken))
        assert leak["test"] < 0.05 <= leak[f"test[{trap.name}]"], (t.id, leak)
        assert leaked(leak), t.id
