"""Strategies for study specs: one part or several, axes, and scalars, quantities, checks and
figures from the study grammar's keys, valid-looking or broken."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from fuzz.fuzzkit import DOTTED, junk_key, run_tree, scalars, small_text, text, values

STUDY_TOP = ["name", "title", "claim", "source", "criterion", "notes", "scale"]
WHERE_KEYS = ["model.topology", "model.n_layers", "part", "label", "seed", "train.lr"]


@st.composite
def axis(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["grid", "zip", "list", "junk"]))
    keys = draw(
        st.lists(st.one_of(st.sampled_from([*DOTTED, "label", "seed"]), small_text), max_size=2)
    )
    if kind == "list":
        return {"list": [{k: draw(values) for k in keys} for _ in range(draw(st.integers(0, 2)))]}
    if kind == "junk":
        return draw(values)
    return {kind: {k: draw(st.lists(scalars, max_size=3)) for k in keys}}


def _where(draw: st.DrawFn) -> Any:
    return draw(
        st.one_of(
            st.dictionaries(st.sampled_from(WHERE_KEYS), scalars, max_size=2), values, st.none()
        )
    )


@st.composite
def element(draw: st.DrawFn, kind: str) -> Any:
    """A scalar, quantity, check or figure table: valid-looking or broken."""
    names = st.sampled_from(["final_loss", "loss", "grad_norm", "a", "b", "post - deep", ""])
    exprs = st.one_of(
        names,
        st.sampled_from(["a >= 0.5", "1/0", "a +", "9" * 400, "+".join(["1"] * 5000), "(" * 500]),
        small_text,
    )
    if kind == "scalar":
        shape = draw(st.sampled_from(["probe", "metric", "expr"]))
        if shape == "probe":
            table = {"probe": draw(names), "key": draw(values), "layer": draw(values)}
            table["fraction"] = draw(values)
        elif shape == "metric":
            table = {"metric": draw(names), "reduce": draw(values), "window": draw(values)}
        else:
            table = {"expr": draw(exprs)}
    elif kind == "quantity":
        shape = draw(st.sampled_from(["of", "slope", "trend", "expr"]))
        table = {shape: draw(exprs)} if shape != "of" else {"of": draw(names)}
        if shape in ("slope", "trend"):
            table["x"] = draw(st.one_of(st.sampled_from(DOTTED), values))
        if shape != "expr":
            table["where"] = _where(draw)
    elif kind == "check":
        table = {"expr": draw(exprs)}
        for key in ("min_seeds", "min_pass", "per_seed", "label", "paper"):
            if draw(st.booleans()):
                table[key] = draw(values)
    else:
        table = {"type": draw(st.sampled_from(["layers", "scaling", "heatmap", "curves", "x"]))}
        for key in ("x", "y", "value", "metric", "probe", "hlines", "slopes", "where", "series"):
            if draw(st.integers(0, 2)) == 0:
                table[key] = draw(st.one_of(names, values))
    if draw(st.integers(0, 9)) == 0:
        table[draw(junk_key)] = draw(values)
    if draw(st.integers(0, 19)) == 0:
        return draw(values)
    return table


@st.composite
def study_tree(draw: st.DrawFn) -> dict[str, Any]:
    """A study as a dict: one part at the top level or several under ``parts``."""

    def part() -> dict[str, Any]:
        out: dict[str, Any] = {}
        if draw(st.integers(0, 19)):
            junk = draw(st.integers(0, 9)) == 0
            out["run"] = draw(text if junk else st.sampled_from(["train", "probe", "skip_paths"]))
        if draw(st.booleans()):
            junk = draw(st.integers(0, 9)) == 0
            out["seeds"] = draw(values if junk else st.lists(st.integers(0, 9), max_size=3))
        if draw(st.booleans()):
            out["base"] = draw(st.one_of(run_tree(), values))
        if draw(st.booleans()):
            out["axes"] = draw(st.lists(axis(), max_size=2))
        if draw(st.integers(0, 4)) == 0:
            names = st.sampled_from(["layer_drop", "grad_norm", "nope"])
            out["after"] = draw(st.one_of(st.lists(names, max_size=2), values))
        return out

    tree: dict[str, Any] = {}
    if draw(st.booleans()):
        tree.update(part())
    else:
        tree["parts"] = [part() for _ in range(draw(st.sampled_from([1, 1, 2, 0])))]
    for key in STUDY_TOP:
        if draw(st.integers(0, 3)) == 0:
            junk = draw(st.integers(0, 3)) == 0
            tree[key] = draw(
                st.one_of(text, scalars) if junk else st.from_regex(r"[a-z]{1,8}", fullmatch=True)
            )
    for key, kind in (("scalars", "scalar"), ("quantities", "quantity")):
        if draw(st.booleans()):
            names = draw(st.lists(st.sampled_from(["a", "b", "final_loss", "x y", ""]), max_size=3))
            tree[key] = {n: draw(element(kind)) for n in names}
    for key, kind in (("checks", "check"), ("figures", "figure")):
        if draw(st.booleans()):
            tree[key] = draw(st.lists(element(kind), max_size=2))
    for key in ("protocol", "headline", "departures", "overrides"):
        if draw(st.integers(0, 9)) == 0:
            tree[key] = draw(values)
    if draw(st.integers(0, 19)) == 0:
        tree[draw(junk_key)] = draw(values)
    return tree
