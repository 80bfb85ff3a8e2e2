"""Issue 6 acceptance, measured against the oracle: tiny generator, N = 400, strong effect
(log-HR 2 per SD).

What the pipeline can recover is bounded by what a model fitted on the *true* latents recovers
(the oracle) on the same survival times: 400 subjects and 30 % censoring leave the oracle's own
cosine well below 1 (0.944 at seed 0, 0.823 on another seed). So the bar is relative, and it is
averaged over several survival-time draws on the same inverted faces, because a single draw's
C-index gap moves by about +-0.01 (docs/simulate.md, "Acceptance figures"):

- recovered cosine >= 0.85 x oracle cosine (means over the draws);
- oracle C-index - recovered C-index <= 0.03 (mean over the draws);
- the projection itself is good: correlation of the true and recovered risk scores > 0.93.

An absolute bar (the old ``cosine >= 0.8`` against 0.809 measured once) fails on another seed
whose oracle is weaker although the inversion is as good. Slow: the projection of 400 faces
(1200 steps) takes about 10 minutes on one CPU core; each extra draw refits only the models.
"""

import numpy as np
import pytest

from facefeat.simulate import pipeline

# the study's own survival times plus nine fresh draws on the same faces. The gap moves by about
# 0.007 (SD) from draw to draw (0.021 to 0.042 measured): with 5 draws the mean's standard error
# (0.003) is as large as the margin between the expected gap (0.027 over 10 draws,
# docs/simulate.md) and the bar, and 5 draws measured 0.0316 once; 10 draws halve the noise.
DRAWS = 10


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_acceptance_on_the_tiny_generator_relative_to_the_oracle(tiny, tmp_path):
    G, info = tiny
    design = dict(effect=2.0, censoring=0.3, baseline="weibull", steps=1200)
    res = pipeline.simulate(n=400, seed=0, G=G, generator_info=info, out=tmp_path / "sim", **design)
    s = res.summary
    print(res.table())
    assert s["inversion"]["score_corr"] > 0.93
    # fresh survival and censoring times on the same 400 inverted faces (same direction: same seed)
    per_rep, _ = pipeline.power_curve([400], replicates=DRAWS - 1, seed=0, G=G, generator_info=info,
                                      pool=res.cohort, **design)
    assert per_rep["error"].isna().all(), per_rep["error"].tolist()
    rec_cos = np.r_[s["recovered"]["cosine"], per_rep["cosine"]]
    orc_cos = np.r_[s["oracle"]["cosine"], per_rep["oracle_cosine"]]
    gaps = np.r_[s["oracle"]["c_index"] - s["recovered"]["c_index"],
                 per_rep["oracle_c_index"] - per_rep["c_index"]]
    print(f"cosine recovered {np.round(rec_cos, 3)} oracle {np.round(orc_cos, 3)}; "
          f"C gap {np.round(gaps, 3)}; means {rec_cos.mean():.3f} / {orc_cos.mean():.3f}, gap {gaps.mean():.3f}")
    assert len(gaps) == DRAWS and np.isfinite(rec_cos).all() and np.isfinite(orc_cos).all()
    assert rec_cos.mean() >= 0.85 * orc_cos.mean()
    assert gaps.mean() <= 0.03
