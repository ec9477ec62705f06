"""Write samples/logbook.txt: five years of Skerry Point Light's daily log (about 150K tokens, 18×
the default model's 8K window), with five numbers to find at known depths.

Entries are composed from the sentences of ``make_long_txt.py`` with a fixed seed, so the file is
the same on every run. ``FACTS`` lists each fact, the question samples/README.md asks about it,
the answer, and the fraction of the way in where it stands. ``--days N`` writes a shorter log
(the first N days, its facts placed at the same fractions): the end-to-end test asks one at
about 3× the window. Run: python samples/make_logbook.py [--days N] [target]
"""

from __future__ import annotations

import argparse
import datetime
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_long_txt import entry  # noqa: E402 - the sample scripts run from anywhere

SEED = 1890
START = datetime.date(1890, 1, 1)
DAYS = 1826  # 1890-01-01 .. 1894-12-31

# (fraction of the way in, sentence, question, answer)
FACTS = (
    (
        0.12,
        "The new lifeboat arrived from Leith today; her registration number is 2961.",
        "What is the registration number of the new lifeboat?",
        "2961",
    ),
    (
        0.33,
        "The new fog horn was tested for the first time today; the number of its boiler is 5523.",
        "What is the number of the boiler of the new fog horn?",
        "5523",
    ),
    (
        0.5,
        "The schooner Margaret Ann ran aground on the west reef tonight; her lost anchor weighed 780 pounds.",
        "How many pounds did the lost anchor of the Margaret Ann weigh?",
        "780",
    ),
    (
        0.71,
        "A letter came from the Commissioners: the station's new pension number is 80452.",
        "What is the station's new pension number?",
        "80452",
    ),
    (
        0.9,
        "The new lens was made in Paris by the firm of Barbier, and its serial number is 36117.",
        "What is the serial number of the new lens?",
        "36117",
    ),
)


def logbook(days: int = DAYS) -> str:
    rng = random.Random(SEED)
    parts = [
        "THE DAILY LOG OF SKERRY POINT LIGHT\n",
        f"Kept by the keepers of the station from {START:%d %B %Y}, one entry each day at sunset.\n",
    ]
    fact_days = {int(fraction * days): sentence for fraction, sentence, _, _ in FACTS}
    for offset in range(days):
        text = entry(START + datetime.timedelta(days=offset), rng)
        if offset in fact_days:
            text = text.rstrip("\n") + " " + fact_days[offset] + "\n"
        parts.append(text)
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", type=Path, default=Path(__file__).with_name("logbook.txt"))
    parser.add_argument("--days", type=int, default=DAYS, help="write only the first DAYS days")
    args = parser.parse_args()
    args.target.write_text(logbook(args.days))
    print(f"wrote {args.target}")


if __name__ == "__main__":
    main()
