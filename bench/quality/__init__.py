"""Quality benchmark: questions about real documents, answered by starcli and by plain transformers.

    python -m bench.quality check                       # documents in place, every answer's evidence found
    python -m bench.quality run --limit 2               # a smoke run
    python -m bench.quality run --out docs/quality.json # star, global, generate (model card), greedy
    python -m bench.quality run --variant star-rp:repetition_penalty=1.1,no_repeat_ngram=0 --systems star
    python -m bench.quality report docs/quality.json    # the tables in docs/quality.md

The dataset is bench/quality_data/questions.toml: PDF pages from /usr/share/doc, an installed
package's sources, logs of real tools (bench/quality_data/make_logs.sh); each question has the
patterns a right answer matches and the document's own words that hold it. Answers are scored
right, wrong or looped (``bench.quality.scoring``); docs/quality.md has the results.

Modules: ``dataset`` (questions, documents, work directory), ``scoring`` (pure), ``systems``
(starcli in-process as the CLI runs it; ``generate``), ``run`` (the loop, the JSON), ``check``,
``report``.
"""
