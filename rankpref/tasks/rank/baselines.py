"""The baseline a new user tries first: ridge regression on the same standardised features.

Fitted in closed form on train + valid with ``alpha`` chosen by exact leave-one-out error
over a log grid (what scikit-learn's ``RidgeCV`` does by default), so it costs one SVD. Every
``rank fit`` reports it beside the trained scorer, on the same split, so a user sees at once
whether the listwise model earns its keep.
"""

from __future__ import annotations

import numpy as np

ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))


def ridge_loo(x: np.ndarray, y: np.ndarray, alphas=ALPHAS) -> dict:
    """Ridge with an unpenalised intercept; ``alpha`` by leave-one-out mean squared error.

    With centred ``X = U S V^T`` the hat matrix is ``U diag(s^2 / (s^2 + alpha)) U^T + 11^T/n``
    and the leave-one-out residual of row ``i`` is ``e_i / (1 - H_ii)``.
    Returns ``{"weights", "bias", "alpha", "loo_mse"}``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"ridge needs at least 3 items, got {n}")
    mx, my = x.mean(axis=0), y.mean()
    xc, yc = x - mx, y - my
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    uty = u.T @ yc
    best = None
    for alpha in alphas:
        shrink = s ** 2 / (s ** 2 + alpha)
        fitted = u @ (shrink * uty)
        h = (u ** 2) @ shrink + 1.0 / n
        loo = (yc - fitted) / np.clip(1.0 - h, 1e-12, None)
        mse = float(np.mean(loo ** 2))
        if best is None or mse < best[0]:
            best = (mse, alpha, shrink)
    mse, alpha, _ = best
    coef = vt.T @ ((s / (s ** 2 + alpha)) * uty)
    return {"weights": coef, "bias": float(my - mx @ coef), "alpha": float(alpha),
            "loo_mse": mse}


def ridge_predict(fitted: dict, x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) @ fitted["weights"] + fitted["bias"]
