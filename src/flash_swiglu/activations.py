"""The gated activations, defined once for every kernel.

A GLU computes ``out = act(gate) * up``. With ``dout`` the gradient of the loss with respect
to ``out``::

    dgate = dout * up * act'(gate)
    dup   = dout * act(gate)

The activations (``ACTIVATION`` is a compile-time string):

    silu        act(g) = g * s,                       s = sigmoid(g)
                act'(g) = s * (1 + g * (1 - s))
    gelu        act(g) = g * Phi(g),                  Phi(g) = (1 + erf(g / sqrt 2)) / 2
                (Phi evaluated as a sigmoid of g times a polynomial in g^2: ``gelu_cdf``)
                act'(g) = Phi(g) + g * phi(g),        phi(g) = exp(-g^2 / 2) / sqrt(2 pi)
    gelu_tanh   act(g) = g * (1 + t) / 2,             t = tanh(z), z = c * (g + 0.044715 g^3),
                                                      c = sqrt(2 / pi)
                act'(g) = (1 + t) / 2 + g * (1 - t^2) * c * (1 + 3 * 0.044715 g^2) / 2
                (evaluated as sigmoids of +-2z, which keep (1 - t^2) accurate where t is near
                +-1; the backward takes both from one exponential, see ``glu_backward``)
    relu        act(g) = max(g, 0),                   act'(g) = [not g <= 0] (1 at NaN: PyTorch's)
    swiglu_oai  (gpt-oss) gc = min(g, limit), uc = clamp(up, -limit, limit),
                out = gc * sigmoid(alpha * gc) * (uc + 1)
                dgate = dout * (uc + 1) * s_a * (1 + alpha * gc * (1 - s_a)) * [g <= limit]
                dup   = dout * gc * s_a * [-limit <= up <= limit],   s_a = sigmoid(alpha * gc)

Constants are written as literals: 1/sqrt(2) = 0.7071067811865476, 1/sqrt(2 pi) =
0.3989422804014327, sqrt(2/pi) = 0.7978845608028654 (module-level floats are not visible to
compiled kernels, and ``tl.constexpr`` globals misbehave in the interpreter).

Every helper computes in fp32 (fp64 for fp64 inputs, used by gradcheck): callers upcast with
``to_compute`` on load and round once on store.
NaN propagates as in PyTorch: the clamps and relu are written with ``tl.where`` so that a
NaN input is passed through (PTX ``min``/``max`` would drop it). The gradient of a clamp
passes where ``-limit <= x <= limit`` (at exactly the limit too; a NaN input gets 0), which
is ``reference.act_glu``'s convention on every PyTorch release.
"""

import triton
import triton.language as tl

from flash_swiglu._names import ACTIVATIONS  # noqa: F401  (re-exported)


@triton.jit
def to_compute(x):
    """Upcast a loaded tile to the compute type: fp32, or fp64 for fp64 inputs."""
    if x.dtype == tl.float64:
        return x
    else:
        return x.to(tl.float32)


@triton.jit
def gelu_cdf(x):
    """The normal CDF ``Phi(x) = (1 + erf(x / sqrt 2)) / 2`` of GELU, in fp32 as
    ``sigmoid(x R(min(x^2, 36)))``: ``log Phi(x) - log Phi(-x)`` is odd, ``x`` times a smooth
    even function, here a degree-7 polynomial in ``x^2`` (``scripts/fit_gelu_cdf.py``; the tanh
    approximation is its first two terms, roughly). GELU from it is within about 2 fp32 ulps
    of the float64 value (the script, in torch's fp32 arithmetic: 5.4e-7 at most on
    1 <= x < 3, the erf form 3.6e-7, PyTorch's CPU ``F.gelu`` 1.2e-6). It costs SiLU's
    sigmoid plus seven FMAs, two multiplies and a min: in the Gluon forward's sm_90 SASS
    about 10 instructions an element more than SiLU, where libdevice's ``erff`` (two
    branches, coefficients picked by selects) cost about 20. Beyond ``|x| = 6`` ``Phi`` is
    within 1e-9 of 0 or 1, and the clamp keeps it there. fp64 (gradcheck) keeps
    the exact erf."""
    if x.dtype == tl.float64:
        cdf = 0.5 * (1.0 + tl.erf(x * 0.7071067811865476))
    else:
        s = tl.minimum(x * x, 36.0)
        r = s * -3.6471024117412654e-11 + 5.331047159273794e-09
        r = r * s - 2.971028152387589e-07
        r = r * s + 8.19349861558294e-06
        r = r * s - 0.00011161158909089863
        r = r * s - 6.355607911245897e-05
        r = r * s + 0.0726652592420578
        r = r * s + 1.595770001411438
        cdf = tl.sigmoid(x * r)
    return cdf


@triton.jit
def glu_forward(gate, up, ACTIVATION: tl.constexpr, ALPHA: tl.constexpr, LIMIT: tl.constexpr):
    """``act(gate) * up`` in fp32 (``gate``, ``up`` already fp32)."""
    if ACTIVATION == "silu":
        out = gate * tl.sigmoid(gate) * up
    elif ACTIVATION == "gelu":
        out = gate * gelu_cdf(gate) * up
    elif ACTIVATION == "gelu_tanh":
        # (1 + tanh(z)) / 2 = sigmoid(2 z)
        s = tl.sigmoid(2.0 * 0.7978845608028654 * (gate + 0.044715 * gate * gate * gate))
        out = gate * s * up
    elif ACTIVATION == "relu":
        out = tl.where(gate < 0.0, 0.0, gate) * up
    else:  # swiglu_oai
        gc = tl.where(gate > LIMIT, LIMIT, gate)
        uc = tl.where(up > LIMIT, LIMIT, tl.where(up < -LIMIT, -LIMIT, up))
        out = gc * tl.sigmoid(ALPHA * gc) * (uc + 1.0)
    return out


@triton.jit
def glu_backward(
    gate, up, dout, ACTIVATION: tl.constexpr, ALPHA: tl.constexpr, LIMIT: tl.constexpr
):
    """``(dgate, dup)`` in fp32, recomputing the activation from ``gate``."""
    if ACTIVATION == "silu":
        s = tl.sigmoid(gate)
        act = gate * s
        dact = s * (1.0 + gate * (1.0 - s))
        dgate = dout * up * dact
        dup = dout * act
    elif ACTIVATION == "gelu":
        cdf = gelu_cdf(gate)
        pdf = tl.exp(-0.5 * gate * gate) * 0.3989422804014327
        dgate = dout * up * (cdf + gate * pdf)
        dup = (dout * cdf) * gate  # not dout * gate first: it can overflow
    elif ACTIVATION == "gelu_tanh":
        # With s = sigmoid(2 z): (1 + t) / 2 = s and (1 - t^2) / 2 = 2 s sigmoid(-2 z), which
        # stays accurate where t is near +-1 (1 - s would cancel). Both from one exponential
        # and one division: with e = exp(-2 z), s = 1 / (1 + e) and sigmoid(-2 z) = e s, so
        # the second is s (e s) (in that order: s s underflows). Extreme gates (session 53):
        # - where e overflows (gate below about -10.8) s is 0 and e s is inf * 0 = NaN; e s
        #   is at most 1, and tl.minimum returns the number where one operand is NaN, so it
        #   is 1 there and both gradients are 0 (true values below 1e-36); a gate of -inf
        #   gives NaN (-inf * 0), as PyTorch does. Until session 53 the exponent was capped
        #   at 80, which left s at e^-80, not 0: the gate's gradient grew as gate^3 * 4e-36
        #   below a gate of about -1e10 (-11.6 at -1e12), and a gate of -inf gave -inf.
        # - dz = c (1 + 3 a gate^2) overflows past |gate| of about 1.8e19, and 0 * dz was NaN
        #   where the gradient is 0 or up; so gate s (e s) dz is formed as c (gw + 3 a (gw
        #   gate) gate) with gw = gate s (e s). (A cap on gate^2 instead spilled in the
        #   recompute backward's sm_90 build, which sits at 254 registers.)
        # A NaN gate gives NaN. Session 35: two sigmoids made this epilogue the slowest of the
        # five; forms with a select (on exp(-|2 z|), or for the overflow) spilled in the
        # recompute backward's sm_90 build.
        g2 = gate * gate
        z2 = 2.0 * 0.7978845608028654 * (gate + 0.044715 * g2 * gate)
        e = tl.exp(-z2)
        s = 1.0 / (1.0 + e)
        gw = gate * (s * tl.minimum(e * s, 1.0))
        tail = 2.0 * 0.7978845608028654 * (gw + 3.0 * 0.044715 * (gw * gate) * gate)
        dgate = dout * up * (s + tail)
        dup = dout * (gate * s)  # gate * s first: dout * gate can overflow
    elif ACTIVATION == "relu":
        dgate = tl.where(gate <= 0.0, 0.0, dout * up)  # NaN passes, as in torch.relu
        dup = dout * tl.where(gate < 0.0, 0.0, gate)
    else:  # swiglu_oai
        gc = tl.where(gate > LIMIT, LIMIT, gate)
        uc = tl.where(up > LIMIT, LIMIT, tl.where(up < -LIMIT, -LIMIT, up))
        s = tl.sigmoid(ALPHA * gc)
        # s (1 + alpha gc (1 - s)) with gc multiplied by s first: alpha gc overflows below a
        # gate of about -2e38, and 0 * -inf would make the gradient NaN where it is 0.
        dact = s + ALPHA * (gc * s) * (1.0 - s)
        dgate = tl.where(gate <= LIMIT, dout * (uc + 1.0) * dact, 0.0)
        dup = tl.where((up >= -LIMIT) & (up <= LIMIT), dout * (gc * s), 0.0)
    return dgate, dup
