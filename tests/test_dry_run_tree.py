"""``--dry-run`` (issue 19): tokens by folder with a fold threshold, counted with the chosen
model's own tokenizer when it is on this machine (else an estimate that says so), and the plan
rank by rank as the run will follow it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from starcli import ingest as ingestion
from starcli.cli import app
from starcli.tokentree import build_tree, tree_json, tree_lines
from tests.helpers import tiny_config

FILES = {
    "src/big.py": "alpha beta gamma " * 40,  # 120 words
    "src/util/small.py": "one two three\n",  # 3
    "src/util/tiny.py": "four five\n",  # 2
    "docs/guide.md": "word " * 50,  # 50
    "README.md": "hello there\n",  # 2
}


def dry_run(*args: str) -> dict:
    result = CliRunner().invoke(app, ["summarize", *args, "--dry-run", "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


@pytest.fixture
def word_model(tmp_path):
    """A local model directory whose tokenizer makes one token of every whitespace-separated
    word: counts anyone can check by hand, and unlike the default model's."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<s>": 1}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", bos_token="<s>")
    path = tmp_path / "word-model"
    tokenizer.save_pretrained(path)
    tiny_config("llama", max_position_embeddings=4096).save_pretrained(path)
    return path


def test_tree_sums_folders_merges_chains_and_folds():
    tree = build_tree([("/tmp/x/repo/a.py", 100), ("/tmp/x/repo/lib/b.py", 30), ("/tmp/x/repo/lib/c.py", 5)])
    assert tree.tokens == 135
    (top,) = tree.children.values()
    assert top.name == "/tmp/x/repo/" and top.tokens == 135  # one-folder chain merged into one line
    assert tree_json(tree)["children"][0]["children"][1] == {
        "name": "lib/",
        "tokens": 35,
        "children": [{"name": "b.py", "tokens": 30}, {"name": "c.py", "tokens": 5}],
    }
    assert tree_lines(tree, fold_below=10) == [
        "        135  /tmp/x/repo/",
        "        100    a.py",
        "         35    lib/",
        "         30      b.py",
        "          5      (1 more file under 10 tokens each)",
    ]
    assert tree_lines(tree, fold_below=50)[-1] == "         35    (2 more files under 50 tokens each)"


def test_counts_come_from_the_chosen_models_own_tokenizer(repo, word_model):
    plan = dry_run(str(repo), "--model", str(word_model))
    assert plan["counted_with"] == {"tokenizer": str(word_model), "exact": True}
    tokens = {s["path"].removeprefix(f"{repo}/"): s["tokens"] for s in plan["sources"]}
    assert tokens == {path: len(text.split()) for path, text in FILES.items()}
    assert plan["tree"]["tokens"] == sum(tokens.values()) == 177
    assert plan["window"] == 4096  # the chosen model's window, read from its config
    documents_text = ingestion.render_documents(ingestion.ingest([str(repo)]).documents)
    # no chat template: the context is the BOS token, then the documents word by word
    assert plan["context_tokens"] == 1 + len(documents_text.split())


def test_text_output_folds_small_items_and_says_how_it_counted(repo, word_model):
    result = CliRunner().invoke(
        app, ["summarize", str(repo), "--dry-run", "--model", str(word_model), "--fold-below", "10"]
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Tokens by folder ({word_model} tokenizer, exact):"
    assert "        120      big.py" in lines
    assert "          5      (2 more files under 10 tokens each)" in lines  # src/util/ folded
    assert "          2    (1 more file under 10 tokens each)" in lines  # README.md folded


def test_a_model_not_on_this_machine_gets_an_estimate_that_says_so(repo):
    plan = dry_run(str(repo), "--model", "/no/such/model")
    assert plan["counted_with"]["exact"] is False
    assert "/no/such/model's tokenizer is not on this machine" in plan["counted_with"]["tokenizer"]
    docs = ingestion.ingest([str(repo)]).documents
    assert [s["tokens"] for s in plan["sources"]] == [d.tokens for d in docs]


@pytest.mark.slow
def test_the_plan_is_the_one_the_run_makes(repo):
    """With the default model (converted in the cache) the counts are exact and the plan rank
    by rank is the one ``ask`` builds from the exact token ids."""
    from engine.runplan import make_run_plan
    from starcli.config import Settings
    from starcli.launch import load_tokenizer
    from starcli.prompt import build, model_facts, summary_instructions

    plan = dry_run(str(repo), "--nproc", "3", "--block-size", "128")
    assert plan["counted_with"]["exact"] is True
    documents_text = ingestion.render_documents(ingestion.ingest([str(repo)]).documents)
    prompt = build(load_tokenizer(None), documents_text, summary_instructions([str(repo)]))
    assert (plan["context_tokens"], plan["query_tokens"]) == (len(prompt.context_ids), len(prompt.query_ids))
    window, cost = model_facts(None)
    settings = Settings(block_size=128, nproc=3).run_settings("summarize")
    run = make_run_plan(settings, len(prompt.context_ids), len(prompt.query_ids), 3, "cpu", window, cost)
    assert plan["blocks_per_rank"] == run.blocks_per_rank() and plan["blocks"] == run.blocks
    for span in plan["ranks"]:
        own = run.layout.ranks[span["rank"]]
        assert span["blocks"] == [own[0], own[-1]]
        assert span["tokens"] == list(run.layout.rank_span(span["rank"]))
    assert plan["ranks"][-1]["tokens"][1] == plan["context_tokens"]
    assert plan["query_position"] == run.context_span
