"""The seeds torch accepts (``torch.manual_seed``, ``torch.Generator.manual_seed``), checked where a
user types one: outside this range torch fails with a bare "Overflow when unpacking long long".
Kept free of torch imports, so that the command line can check a seed before loading anything."""

SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
