"""Write samples/long.txt: a lighthouse keeper's journal for 1893, with one fact to find.

The entries are composed from plain sentences with a fixed random seed, so the file is the same
on every run. One entry, about 60 % of the way in, states the fact that samples/README.md asks
about. Run: python samples/make_long_txt.py
"""

from __future__ import annotations

import datetime
import random
import sys
from pathlib import Path

NEEDLE = "The new lamp arrived from Glasgow today, and its serial number is 4817."
NEEDLE_DAY = 220  # day of the year whose entry carries the needle
SEED = 1893
STEP_DAYS = 5  # one entry every five days keeps the file within the default model's window

WEATHER = [
    "Wind {wind} and {strength}, the sea {sea}.",
    "A {sky} sky at dawn; the wind backed to the {wind} by noon.",
    "Fog came in from the {wind} before midday and lay on the water until dusk.",
    "Rain squalls all morning, clearing in the afternoon with a {strength} breeze.",
    "Calm and bright; the gulls sat on the rocks all day.",
    "A hard gale from the {wind}; spray reached the gallery twice during the night.",
    "Frost on the gallery rail at first light. Wind {wind}, {strength}.",
]
WORK = [
    "Cleaned the lens and trimmed the wicks before sunset.",
    "Polished the brass of the lantern and wiped the storm panes.",
    "Painted the iron door of the oil store, which had begun to rust.",
    "Carried {n} cans of paraffin from the landing to the oil store.",
    "Wound the clockwork of the lens {n} times during the night watch.",
    "Mended the fence of the sheep park where the wind had torn it.",
    "Scraped the moss from the steps that lead down to the landing.",
    "Tested the fog bell and greased its hammer.",
    "Whitewashed the north wall of the dwelling house.",
    "Dug the potato rows behind the keeper's cottage.",
    "Checked the barometer every four hours; it stood at {pressure} inches at noon.",
]
SHIPS = [
    "The steamer {ship} passed to the {side} at {hour} o'clock, bound for {port}.",
    "Saw {n} fishing boats working the bank to the {side} of the island.",
    "A three-masted barque stood off to the {side} most of the day, waiting for a fair wind.",
    "The {ship} signalled as she passed and we answered with the flags.",
    "No vessels sighted all day.",
    "The mail boat {ship} called with letters, flour and {n} sacks of coal.",
]
HOME = [
    "Mary baked bread and the boys gathered driftwood on the south beach.",
    "Read the Bible to the household in the evening, as is our custom.",
    "The assistant keeper, Thomas Reid, complained of a sore tooth.",
    "Wrote to the Commissioners asking for new glass for the lantern.",
    "The cow gave {n} pints of milk, more than she has given for a month.",
    "Caught {n} fish from the rocks below the light; we ate them for supper.",
    "The children found a seal pup on the landing and watched it for an hour.",
    "Mended the boys' boots by the fire after supper.",
]
SLOTS = {
    "wind": ["north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west"],
    "strength": ["light", "moderate", "fresh", "strong"],
    "sea": ["calm", "slight", "moderate", "rough", "very rough"],
    "sky": ["grey", "clear", "red", "overcast", "hazy"],
    "ship": ["Saint Clair", "Pharos", "Earl of Zetland", "Hebridean", "Dunara Castle", "Clansman"],
    "side": ["north", "east", "south", "west"],
    "port": ["Leith", "Aberdeen", "Kirkwall", "Lerwick", "Stornoway", "Oban"],
}


def fill(template: str, rng: random.Random) -> str:
    values = {name: rng.choice(options) for name, options in SLOTS.items()}
    values["n"] = rng.randint(2, 12)
    values["hour"] = rng.randint(1, 12)
    values["pressure"] = f"{rng.uniform(29.1, 30.6):.2f}"
    return template.format(**values)


def entry(day: datetime.date, rng: random.Random) -> str:
    sentences = [fill(rng.choice(WEATHER), rng)]
    sentences += [fill(t, rng) for t in rng.sample(WORK, 2)]
    sentences.append(fill(rng.choice(SHIPS), rng))
    if rng.random() < 0.6:
        sentences.append(fill(rng.choice(HOME), rng))
    return f"{day:%A %d %B %Y}.\n" + " ".join(sentences) + "\n"


def journal() -> str:
    rng = random.Random(SEED)
    start = datetime.date(1893, 1, 1)
    parts = [
        "THE JOURNAL OF SKERRY POINT LIGHT\n",
        "Kept by John Macrae, principal keeper, for the year 1893.\n",
        "Entries are made at sunset, after the light is lit.\n",
    ]
    for offset in range(0, 365, STEP_DAYS):
        day = start + datetime.timedelta(days=offset)
        text = entry(day, rng)
        if offset <= NEEDLE_DAY < offset + STEP_DAYS:
            text = text.rstrip("\n") + " " + NEEDLE + "\n"
        parts.append(text)
    return "\n".join(parts)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("long.txt")
    target.write_text(journal())
    print(f"wrote {target}")
