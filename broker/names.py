"""Readable run names (``adjective-animal``), as Prefect gives its flow runs.

The name is for people; the run id is what identifies a run, so collisions are harmless.
A name given instead is held to one printable line (``field_types.validate_run_name``):
it is shown in listings, pages and every log line echoed for the run.
"""

from __future__ import annotations

import random

ADJECTIVES = (
    "agile", "amber", "bold", "brave", "bright", "calm", "careful", "cheerful", "clever",
    "cosmic", "crisp", "curious", "daring", "deft", "eager", "earnest", "electric",
    "elegant", "fearless", "fierce", "friendly", "gentle", "gleaming", "golden", "graceful",
    "hardy", "hopeful", "humble", "jolly", "keen", "kind", "lively", "lucky", "lunar",
    "mellow", "merry", "mighty", "nimble", "noble", "patient", "peaceful", "plucky",
    "polite", "proud", "quick", "quiet", "radiant", "rapid", "restless", "robust", "rustic",
    "sassy", "serene", "sharp", "shiny", "silent", "smart", "snappy", "solar", "spirited",
    "steady", "stellar", "sturdy", "sunny", "swift", "tidy", "tireless", "tranquil",
    "valiant", "vivid", "warm", "wise", "witty", "zealous",
)

ANIMALS = (
    "albatross", "alpaca", "antelope", "armadillo", "badger", "beaver", "bison", "bobcat",
    "caracal", "caribou", "cheetah", "chipmunk", "cobra", "condor", "cougar", "coyote",
    "crane", "dingo", "dolphin", "eagle", "egret", "falcon", "ferret", "finch", "flamingo",
    "fox", "gazelle", "gecko", "gibbon", "giraffe", "heron", "hedgehog", "ibis", "iguana",
    "jackal", "jaguar", "kestrel", "kingfisher", "koala", "lemur", "leopard", "lynx",
    "macaw", "manatee", "marmot", "meerkat", "mongoose", "moose", "narwhal", "ocelot",
    "okapi", "orca", "osprey", "otter", "panda", "pelican", "penguin", "petrel", "puffin",
    "quail", "raccoon", "raven", "salamander", "seal", "sparrow", "stork", "tapir", "tiger",
    "toucan", "walrus", "weasel", "wolf", "wombat", "yak", "zebra",
)


def generate_run_name() -> str:
    """Return a fresh ``adjective-animal`` name such as ``swift-otter``."""
    return f"{random.choice(ADJECTIVES)}-{random.choice(ANIMALS)}"
