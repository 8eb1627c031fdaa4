"""Noise models by metric kind, scored online day by day over many series at once.

Every model reads only the past, and its baseline reads a *cleaned* past: each scored day is
winsorized at its band (expected +- threshold sd), so a three-week incident does not become the
new normal while a slow drift is still followed.

- counts: the mean of the same weekday in the previous weeks, corrected by the median relative
  residual; negative-binomial noise whose over-dispersion is estimated robustly (MAD) from the
  trailing residuals, beyond a Poisson floor.
- rates: the pooled rate of the trailing days; beta-binomial noise with that day's denominator
  (0 of 20 sessions is weak evidence, 0 of 2,000 is strong); the extra-binomial dispersion comes
  robustly from the trailing days, so large scopes do not flood.
- log (page views, events, revenue, durations: sums or means over sessions): the median of the
  same weekday on a started log scale (log(x + the series' median)), spread from the MAD of the
  trailing residuals, never below what the day's sample size supports (sqrt(cv^2 / units) for
  the day's sessions or purchases).

Evidence is pooled over trailing windows (1, 3, 7 and ``max_window_days`` days): a partial shift
that lasts is seen even where no single day stands out. A score is a signed z of a tail
probability, clipped to +-50, never NaN. A point is flagged when |score| passes the threshold and
the day is off its expectation by at least ``min_relative_change`` (a material change: a slow
drift of a few percent in a large scope is significant but not an incident).
"""

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from ubap_assets.core.anomalies.settings import MAX_ABS_SCORE, DetectorSettings

_MAD_TO_SIGMA = 1.4826
_TINY_P = 1e-300
_MIN_DAY_LEAN = 1.0  # |z| of the day itself before pooled evidence may flag it
_MIN_N_FOR_RHO = 20  # typical daily trials below this: binomial noise dominates, rho is 0


@dataclass
class Scored:
    """Per series x day (S x T): the expectation and band in the metric's units, scores, flags."""

    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    day_score: np.ndarray  # single-day evidence
    window_score: np.ndarray  # evidence pooled over max_window_days
    score: np.ndarray  # the strongest evidence agreeing with the day's direction
    flag: np.ndarray
    scored: np.ndarray  # False: warm-up or nothing to score that day
    # What later days read of a day (S x T each, see PAST_STATE): the cleaned (winsorized) value,
    # the relative residual, the baseline, the modelled mean and variance.
    past: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> "Scored":
        z = np.zeros(shape)
        return cls(
            z.copy(),
            z.copy(),
            z.copy(),
            z.copy(),
            z.copy(),
            z.copy(),
            np.zeros(shape, bool),
            np.zeros(shape, bool),
        )


# The state a model carries from one day to the next, per series and day; with it, scoring can
# resume at any day and give exactly what scoring the whole history gives (``start``/``past``).
PAST_STATE = ("clean", "rel", "base", "mean", "var")


def _restore(past: dict[str, np.ndarray] | None, start: int, out: Scored, **arrays) -> None:
    """Copy the days before ``start`` of a previous run's state into this run's arrays."""
    if not start:
        return
    if past is None:
        raise ValueError("resuming at a later day needs the state of the days before it")
    for name, array in arrays.items():
        array[:, :start] = past[name][:, :start]
    out.scored[:, :start] = past["scored"][:, :start]


def _nan_median(m: np.ndarray) -> np.ndarray:
    """Row-wise median of the non-NaN values (NaN for a row without any): the same numbers as
    ``np.nanmedian(m, axis=1)``, about ten times faster on the small windows scored every day
    (NaN sorts last, so the middle of a row's first ``n`` sorted values is its median)."""
    if not m.shape[1]:
        return np.full(m.shape[0], np.nan)
    ordered = np.sort(m, axis=1)
    n = np.sum(~np.isnan(m), axis=1)
    low = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, np.minimum(n // 2, m.shape[1] - 1)[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, (low + high) / 2, np.nan)


def _robust_center_var(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise median, (1.4826 MAD)^2 and count of the non-NaN values."""
    center = _nan_median(m)
    mad = _nan_median(np.abs(m - center[:, None]))
    return center, (_MAD_TO_SIGMA * mad) ** 2, np.sum(~np.isnan(m), axis=1)


def z_from_tails(lower_p: np.ndarray, upper_p: np.ndarray) -> np.ndarray:
    """Signed z of the smaller tail (negative when P(X <= x) is the small one), bounded."""
    lower_p = np.nan_to_num(np.asarray(lower_p, float), nan=1.0)
    upper_p = np.nan_to_num(np.asarray(upper_p, float), nan=1.0)
    p = np.clip(np.minimum(lower_p, upper_p), _TINY_P, 0.5)
    magnitude = -special.ndtri(p)
    z = np.where(lower_p < upper_p, -magnitude, magnitude)
    return np.clip(np.nan_to_num(z), -MAX_ABS_SCORE, MAX_ABS_SCORE)


def count_z(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """z of a count x against a negative binomial of this mean and variance (var = mean:
    Poisson)."""
    x = np.maximum(np.asarray(x, float), 0.0)
    mean = np.maximum(np.asarray(mean, float), 1e-9)
    extra = np.maximum(np.asarray(var, float) - mean, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(extra > 1e-9 * mean**2, mean**2 / np.maximum(extra, 1e-300), np.inf)
        poisson = ~np.isfinite(r) | (r > 1e7)
        r_nb = np.where(poisson, 1.0, r)
        p_nb = r_nb / (r_nb + mean)
        lower = np.where(
            poisson, special.gammaincc(x + 1, mean), special.betainc(r_nb, x + 1, p_nb)
        )
        upper = np.where(
            x <= 0,
            1.0,
            np.where(
                poisson,
                special.gammainc(np.maximum(x, 1e-9), mean),
                special.betainc(np.maximum(x, 1e-9), r_nb, 1 - p_nb),
            ),
        )
    return z_from_tails(lower, upper)


def rate_z(k: np.ndarray, n: np.ndarray, p: np.ndarray, design: np.ndarray) -> np.ndarray:
    """z of k successes out of n against rate p, the binomial variance inflated by ``design``
    (a beta-binomial's design effect): an effective binomial of n/design trials."""
    n = np.asarray(n, float)
    p = np.clip(np.asarray(p, float), 1e-9, 1 - 1e-9)
    design = np.maximum(np.asarray(design, float), 1.0)
    n_eff = n / design
    k_eff = np.clip(np.asarray(k, float) / design, 0.0, n_eff)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(
            k_eff >= n_eff,
            1.0,
            special.betainc(np.maximum(n_eff - k_eff, 1e-9), k_eff + 1, 1 - p),
        )
        upper = np.where(
            k_eff <= 0,
            1.0,
            special.betainc(np.maximum(k_eff, 1e-9), n_eff - k_eff + 1, p),
        )
    z = z_from_tails(lower, upper)
    return np.where(n > 0, z, 0.0)


def _pick(
    day: np.ndarray, pooled: list[np.ndarray], day_change: np.ndarray, settings
) -> np.ndarray:
    """The strongest evidence, among the day's own and the pooled windows' (``pooled`` follows
    ``settings.windows[1:]``), that the recent days lean towards: the 3-day window needs the
    day itself to lean the same way (|z| >= 1 or a material change), a longer window needs the
    last 3 days to (|z| >= 1), so a window does not outlast its anomaly."""
    best = day.copy()
    # A day of few trials can have z = 0 (both tails above one half): its change says the way.
    way = np.where(day != 0, np.sign(day), np.sign(np.nan_to_num(day_change)))
    day_leans = (np.abs(day) >= _MIN_DAY_LEAN) | (
        np.abs(day_change) >= settings.min_relative_change
    )
    recent = None
    for w, z in zip(settings.windows[1:], pooled, strict=True):
        if recent is None or w <= 3:
            agree = (np.sign(z) == way) & (way != 0) & day_leans
            recent = z
        else:
            agree = (np.sign(z) == np.sign(recent)) & (np.abs(recent) >= _MIN_DAY_LEAN)
        best = np.where(agree & (np.abs(z) > np.abs(best)), z, best)
    return best


def _window_ready(scored: np.ndarray, t: int, w: int) -> np.ndarray:
    if t - w + 1 < 0:
        return np.zeros(scored.shape[0], bool)
    return scored[:, t - w + 1 : t + 1].all(axis=1)


def score_counts(
    x: np.ndarray,
    settings: DetectorSettings,
    start: int = 0,
    past: dict[str, np.ndarray] | None = None,
) -> Scored:
    """Counts (S x T, >= 0): seasonal baseline, negative-binomial noise. Days before ``start``
    are not scored: their state comes from ``past`` (a previous run's ``Scored.past`` with
    ``scored``)."""
    s, n_days = x.shape
    out = Scored.empty(x.shape)
    clean = x.astype(float).copy()
    base = np.full(x.shape, np.nan)
    rel = np.full(x.shape, np.nan)
    mean = np.zeros(x.shape)
    var = np.zeros(x.shape)
    _restore(past, start, out, clean=clean, rel=rel, base=base, mean=mean, var=var)
    floor2 = settings.min_relative_noise**2
    for t in range(start, n_days):
        lags = [t - 7 * k for k in range(1, settings.baseline_weeks + 1) if t - 7 * k >= 0]
        if len(lags) < settings.min_baseline_weeks:
            continue
        b = clean[:, lags].mean(axis=1)
        base[:, t] = b
        lo = max(0, t - settings.history_days)
        _, rel_var, count = _robust_center_var(rel[:, lo:t])
        # The bias of the baseline (a trend, a drift) comes from the last week only.
        center = _nan_median(rel[:, max(0, t - 7) : t])
        ready = count >= settings.min_history_points
        poisson_part = _nan_median(1.0 / np.maximum(base[:, lo:t], 0.5))
        c2 = np.maximum(np.nan_to_num(rel_var - poisson_part), floor2)
        m = np.maximum(b * (1 + np.nan_to_num(center)), 0.5)
        v = m + c2 * m**2
        mean[:, t], var[:, t] = m, v
        out.scored[:, t] = ready
        z_day = count_z(x[:, t], m, v)
        pooled = []
        for w in settings.windows[1:]:
            ok = _window_ready(out.scored, t, w)
            sl = slice(t - w + 1, t + 1)
            z = count_z(x[:, sl].sum(1), mean[:, sl].sum(1), var[:, sl].sum(1))
            pooled.append(np.where(ok, z, 0.0))
        day_change = x[:, t] / m - 1
        score = np.where(ready, _pick(z_day, pooled, day_change, settings), 0.0)
        material = np.abs(day_change) >= settings.min_relative_change
        flag = ready & material & (np.abs(score) >= settings.threshold)
        sd = np.sqrt(v)
        out.expected[:, t] = np.where(ready, m, x[:, t])
        out.lower[:, t] = np.where(ready, np.maximum(m - settings.threshold * sd, 0.0), x[:, t])
        out.upper[:, t] = np.where(ready, m + settings.threshold * sd, x[:, t])
        out.day_score[:, t] = np.where(ready, z_day, 0.0)
        out.window_score[:, t] = np.where(ready, pooled[-1] if pooled else z_day, 0.0)
        out.score[:, t], out.flag[:, t] = score, flag
        # The past the baselines read is winsorized at the band: an incident does not become
        # the new normal, while a lasting drift is still followed.
        clean[:, t] = np.where(
            ready,
            np.clip(x[:, t], m - settings.threshold * sd, m + settings.threshold * sd),
            x[:, t],
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            rel[:, t] = np.where(b > 0, clean[:, t] / b - 1, np.nan)
    out.past = {"clean": clean, "rel": rel, "base": base, "mean": mean, "var": var}
    return out


@dataclass
class _RateReference:
    """The pooled rate of a stretch of past days and the noise around it."""

    p0: np.ndarray
    rho: np.ndarray  # beta-binomial intra-day correlation (extra-binomial dispersion)
    total_n: np.ndarray
    n_typical: np.ndarray
    ready: np.ndarray

    def design(self, n: np.ndarray) -> np.ndarray:
        """Variance of k out of n over the binomial's: the day's noise (1 + (n - 1) rho) plus the
        uncertainty of the pooled rate (n / total_n of it)."""
        per_day = 1 + (np.nan_to_num(self.n_typical) - 1).clip(0) * self.rho
        return 1 + (n - 1).clip(0) * self.rho + n / np.maximum(self.total_n, 1.0) * per_day


def _rate_reference(
    k: np.ndarray, n: np.ndarray, end: int, settings: DetectorSettings
) -> _RateReference:
    """The reference of the ``history_days`` days before day ``end`` (cleaned successes)."""
    lo = max(0, end - settings.history_days)
    hk, hn = k[:, lo:end], n[:, lo:end]
    total_n = hn.sum(1)
    p0 = (hk.sum(1) + 0.5) / (total_n + 1.0)
    days_with = (hn > 0).sum(1)
    ready = (end >= settings.rate_warmup_days) & (
        days_with >= min(settings.min_history_points, settings.rate_warmup_days)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        zi = (hk - hn * p0[:, None]) / np.sqrt(hn * (p0 * (1 - p0))[:, None])
    zi = np.where(hn > 0, zi, np.nan)
    _, z_var, _ = _robust_center_var(zi)
    n_typical = _nan_median(np.where(hn > 0, hn, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(
            n_typical >= _MIN_N_FOR_RHO, (np.nan_to_num(z_var, nan=1.0) - 1) / (n_typical - 1), 0
        )
    rho = np.clip(np.nan_to_num(rho), 0.0, 0.5)
    return _RateReference(p0, rho, total_n, n_typical, ready)


def score_rates(
    k: np.ndarray,
    n: np.ndarray,
    settings: DetectorSettings,
    start: int = 0,
    past: dict[str, np.ndarray] | None = None,
) -> Scored:
    """Rates k / n (S x T): beta-binomial noise with that day's n around the pooled rate of the
    days before. Each window is compared with the ``history_days`` days *before it starts*, so
    a lasting drop never pollutes its own reference. ``start``/``past``: as for counts."""
    s, n_days = k.shape
    out = Scored.empty(k.shape)
    k = k.astype(float)
    n = n.astype(float)
    clean_k = k.copy()
    _restore(past, start, out, clean=clean_k)
    first = max(settings.rate_warmup_days, 1)
    # A day's reference reads only cleaned days before it, final once the loop passed them:
    # each is computed once and serves the windows that start on that day later.
    refs: dict[int, _RateReference] = {
        day: _rate_reference(clean_k, n, day, settings)
        for day in range(max(first, start - settings.max_window_days), start)
    }
    for t in range(max(first, start), n_days):
        ref = refs[t] = _rate_reference(clean_k, n, t, settings)
        n_t = n[:, t]
        p0, design = ref.p0, ref.design(n_t)
        scored = ref.ready & (n_t > 0)
        z_day = rate_z(k[:, t], n_t, p0, design)
        pooled = []
        for w in settings.windows[1:]:
            start = t - w + 1
            before = refs.get(start)
            if before is None:  # the window starts in the warm-up
                pooled.append(np.zeros(s))
                continue
            sl = slice(start, t + 1)
            window_n = n[:, sl]
            sn = window_n.sum(1)
            # Summed over the window's days: each day's beta-binomial noise, plus the
            # uncertainty of the reference rate for all of them at once.
            per_day = 1 + (window_n - 1).clip(0) * before.rho[:, None]
            shared = (
                sn
                / np.maximum(before.total_n, 1.0)
                * (1 + (np.nan_to_num(before.n_typical) - 1).clip(0) * before.rho)
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                d_bar = np.where(sn > 0, (window_n * per_day).sum(1) / sn + shared, 1.0)
            z = rate_z(k[:, sl].sum(1), sn, before.p0, d_bar)
            pooled.append(np.where(before.ready & (sn > 0), z, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            day_rate = np.where(n_t > 0, k[:, t] / np.maximum(n_t, 1), p0)
        day_change = day_rate / p0 - 1
        score = np.where(scored, _pick(z_day, pooled, day_change, settings), 0.0)
        material = np.abs(day_change) >= settings.min_relative_change
        flag = scored & material & (np.abs(score) >= settings.threshold)
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = np.where(n_t > 0, np.sqrt(p0 * (1 - p0) * design / np.maximum(n_t, 1)), 0.0)
        value = day_rate
        out.expected[:, t] = np.where(scored, p0, np.where(n_t > 0, value, 0.0))
        out.lower[:, t] = np.where(
            scored, np.clip(p0 - settings.threshold * sd, 0, 1), out.expected[:, t]
        )
        out.upper[:, t] = np.where(
            scored, np.clip(p0 + settings.threshold * sd, 0, 1), out.expected[:, t]
        )
        out.day_score[:, t] = np.where(scored, z_day, 0.0)
        out.window_score[:, t] = np.where(scored, pooled[-1] if pooled else z_day, 0.0)
        out.score[:, t], out.flag[:, t], out.scored[:, t] = score, flag, scored
        band = settings.threshold * np.sqrt(n_t * p0 * (1 - p0) * design)
        # A flagged day counts at its expectation, any other at most at its band's edge.
        kept = np.where(flag, n_t * p0, np.clip(k[:, t], n_t * p0 - band, n_t * p0 + band))
        clean_k[:, t] = np.where(scored, kept, k[:, t])
    nothing = np.full(k.shape, np.nan)
    out.past = {"clean": clean_k, "rel": nothing, "base": nothing, "mean": nothing, "var": nothing}
    return out


def log_offset(x: np.ndarray, valid: np.ndarray, settings: DetectorSettings):
    """Per series: the start of its log scale, the median of its first ``warmup_days`` usable
    positive values, and the day index from which that is known (``T`` when never).

    Fixed from then on, so a day's score never depends on later days (a median over the whole
    series would rescore the past every night). Until it is known the series is warm-up."""
    s, n_days = x.shape
    need = max(settings.warmup_days, 1)
    usable = valid & (x > 0)
    offset = np.ones(s)
    known_from = np.full(s, n_days)
    for i in range(s):
        days = np.flatnonzero(usable[i])
        if days.size:
            offset[i] = np.median(x[i, days[:need]])
        if days.size >= need:
            known_from[i] = days[need - 1]
    return np.maximum(np.nan_to_num(offset, nan=1.0), 1e-6), known_from


def score_logs(
    x: np.ndarray,
    units: np.ndarray,
    valid: np.ndarray,
    noise_cv2: float | np.ndarray,
    settings: DetectorSettings,
    start: int = 0,
    past: dict[str, np.ndarray] | None = None,
) -> Scored:
    """Sums and means over sessions (S x T): robust (median / MAD) on a started log; the spread
    is at least what sqrt(noise_cv2 / units) gives (few sessions or purchases are noisy).
    ``start``/``past``: as for counts (a series whose log offset was not known before
    ``start`` must start at 0)."""
    s, n_days = x.shape
    out = Scored.empty(x.shape)
    # log(x + offset), the offset the series' typical (early) value: a started log, so a day of
    # a handful of sessions that falls to zero is a bounded step (log 2), not minus infinity.
    offset, known_from = log_offset(x, valid, settings)
    offset = offset[:, None]
    y = np.log(np.maximum(x.astype(float), 0.0) + offset)
    clean = np.where(valid, y, np.nan)
    res = np.full(x.shape, np.nan)
    mean = np.zeros(x.shape)
    var = np.zeros(x.shape)
    _restore(past, start, out, clean=clean, rel=res, mean=mean, var=var)
    ready_days = out.scored  # the days scored so far (pooled windows need all of theirs)
    for t in range(start, n_days):
        lags = [t - 7 * k for k in range(1, settings.baseline_weeks + 1) if t - 7 * k >= 0]
        if len(lags) < settings.min_baseline_weeks:
            continue
        same_day = clean[:, lags]
        b = _nan_median(same_day)
        lo = max(0, t - settings.history_days)
        _, spread2, count = _robust_center_var(res[:, lo:t])
        center = _nan_median(res[:, max(0, t - 7) : t])
        ready = (count >= settings.min_history_points) & (
            np.sum(~np.isnan(same_day), axis=1) >= settings.min_baseline_weeks
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            typical_units = np.nanmean(np.where(valid[:, lo:t], units[:, lo:t], np.nan), axis=1)
        # The day's sample size, or the usual one if smaller, bounds how sure a day can be.
        units_t = np.minimum(units[:, t], np.nan_to_num(typical_units))
        floor2 = 0.25 * noise_cv2 / np.maximum(units_t, 0.5)  # 0.25: the started log halves
        sigma2 = np.maximum(np.maximum(np.nan_to_num(spread2), floor2), 0.02**2)
        m = np.nan_to_num(b + np.nan_to_num(center))
        mean[:, t], var[:, t] = m, sigma2
        scored = ready & valid[:, t] & (known_from <= t)
        ready_days[:, t] = scored
        z_day = np.clip((y[:, t] - m) / np.sqrt(sigma2), -MAX_ABS_SCORE, MAX_ABS_SCORE)
        pooled = []
        for w in settings.windows[1:]:
            ok = _window_ready(ready_days, t, w)
            sl = slice(t - w + 1, t + 1)
            z = (y[:, sl] - mean[:, sl]).sum(1) / np.sqrt(var[:, sl].sum(1))
            pooled.append(np.where(ok, np.clip(np.nan_to_num(z), -MAX_ABS_SCORE, MAX_ABS_SCORE), 0))
        value_expected = np.maximum(np.exp(np.minimum(m, 700)) - offset[:, 0], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            day_change = np.where(
                value_expected > 0, x[:, t] / np.maximum(value_expected, 1e-12) - 1, 0.0
            )
        score = np.where(scored, _pick(z_day, pooled, day_change, settings), 0.0)
        material = np.abs(day_change) >= settings.min_relative_change
        flag = scored & material & (np.abs(score) >= settings.threshold)
        sd = np.sqrt(sigma2)
        band = settings.threshold * sd
        out.expected[:, t] = np.where(scored, value_expected, x[:, t])
        lower = np.maximum(np.exp(np.minimum(m - band, 700)) - offset[:, 0], 0.0)
        upper = np.minimum(np.exp(np.minimum(m + band, 700)) - offset[:, 0], 1e300)
        out.lower[:, t] = np.where(scored, lower, x[:, t])
        out.upper[:, t] = np.where(scored, upper, x[:, t])
        out.day_score[:, t] = np.where(scored, z_day, 0.0)
        out.window_score[:, t] = np.where(scored, pooled[-1] if pooled else z_day, 0.0)
        out.score[:, t], out.flag[:, t] = score, flag
        clean[:, t] = np.where(scored, np.clip(y[:, t], m - band, m + band), clean[:, t])
        res[:, t] = np.where(valid[:, t] & ~np.isnan(b), clean[:, t] - b, np.nan)
    # A series whose log scale is not known yet has nothing scored and no state worth keeping
    # (it would depend on a provisional scale): it is scored from its first day once known.
    unknown = known_from >= n_days
    for array in (clean, res, mean, var):
        array[unknown] = np.nan
    base = np.full(x.shape, np.nan)
    out.past = {"clean": clean, "rel": res, "base": base, "mean": mean, "var": var}
    return out
