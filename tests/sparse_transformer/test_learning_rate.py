"""The Transformer LR schedules against their closed forms (sos_spec 5.4)."""

import numpy as np
import pytest

from state_of_sparsity.sparse_transformer import learning_rate


def _values(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


def test_base_schedule_matches_the_spec_formula_and_peak():
    schedule = learning_rate.create("constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size",
                                    0.2, 2.0, 8000, 512)
    steps = np.array([0, 1, 4000, 8000, 8001, 100_000, 500_000])
    expected = 2.0 * np.minimum(1, steps / 8000) * np.maximum(steps, 8000) ** -0.5 * 512 ** -0.5
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-6)
    assert float(schedule(8000)) == pytest.approx(9.882e-4, rel=1e-3)
    assert _values(schedule, [7999, 8000, 8001]).argmax() == 1


def test_factor_order_does_not_matter_and_subsets_work():
    a = learning_rate.FactorSchedule("rsqrt_decay*constant", 3.0, 100, 64)
    b = learning_rate.FactorSchedule("constant*rsqrt_decay", 3.0, 100, 64)
    np.testing.assert_allclose(_values(a, [0, 50, 400]), _values(b, [0, 50, 400]))
    np.testing.assert_allclose(_values(a, [0, 50, 400]), 3.0 * np.array([0.1, 0.1, 0.05]), rtol=1e-6)


def test_legacy_noam_matches_t2t():
    schedule = learning_rate.create("legacy", 0.1, 2.0, 4000, 512)
    steps = np.array([0, 10, 3999, 4000, 20_000])
    s = steps + 1.0
    expected = 0.1 * 512 ** -0.5 * np.minimum(s * 4000 ** -1.5, s ** -0.5)
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-6)


@pytest.mark.parametrize("schedule", ["constant*cosine", "", "constant**linear_warmup"])
def test_unknown_factors_name_the_hparam(schedule):
    with pytest.raises(ValueError, match="learning_rate_schedule"):
        learning_rate.FactorSchedule(schedule, 1.0, 10, 8)


def test_bad_numbers_are_rejected_and_config_round_trips():
    with pytest.raises(ValueError, match="warmup_steps"):
        learning_rate.FactorSchedule("constant", 1.0, 0, 8)
    with pytest.raises(ValueError, match="learning_rate"):
        learning_rate.LegacyNoam(0.0, 10, 8)
    schedule = learning_rate.FactorSchedule("constant*linear_warmup", 2.0, 10, 8)
    clone = learning_rate.FactorSchedule.from_config(schedule.get_config())
    np.testing.assert_allclose(_values(clone, [0, 5, 20]), _values(schedule, [0, 5, 20]))
