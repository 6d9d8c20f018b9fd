"""Write codec/data/gaussian_tables.npz: the integer pmfs of the scale
table's quantized Gaussians (codec/priors.py: make_gaussian_tables). Run
once when the scale table or its cover changes; the test suite checks that
the shipped file matches what this computes."""

import numpy as np

from codec import priors

if __name__ == "__main__":
    tables = priors.make_gaussian_tables()
    np.savez_compressed(priors.TABLES_FILE, **{f"t{i:02d}": t.astype(np.int32) for i, t in enumerate(tables)})
    print(f"wrote {priors.TABLES_FILE}: {len(tables)} tables, {sum(map(len, tables))} entries")
