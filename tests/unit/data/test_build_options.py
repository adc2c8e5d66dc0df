"""Option names of sources and protocols: checked, and routed to the side that takes them."""

from __future__ import annotations

import pytest

from dinrec.data.build_options import (
    check_option_names,
    protocol_option_names,
    route_options,
    source_option_names,
)


def test_route_options_sends_each_name_to_its_side() -> None:
    reader, protocol = route_options(
        "movielens", "rating", {"layout": "100k", "threshold": 3.5, "protocol.history": "all"})
    assert reader == {"layout": "100k"}
    assert protocol == {"threshold": 3.5, "history": "all"}


def test_route_options_rejects_unknown_names_listing_both_sides() -> None:
    with pytest.raises(ValueError, match=r"unknown option 'thresh'.*takes layout.*threshold"):
        route_options("movielens", "rating", {"thresh": 3})
    with pytest.raises(ValueError, match="prefix must be"):
        route_options("movielens", "rating", {"vocab.min_count": 3})


def test_owned_names_are_left_out_of_the_accepted_options() -> None:
    assert "on_error" not in source_option_names("movielens")
    assert "seed" not in source_option_names("synthetic")
    assert "users_per_chunk" in source_option_names("synthetic")
    assert not {"maxlen", "split", "seed"} & set(protocol_option_names("next-item"))


def test_an_owned_or_unknown_option_raises_naming_it_and_its_owner() -> None:
    with pytest.raises(ValueError, match="reader option 'on_error' is set by build_dataset's "
                                         "own 'on_error' argument"):
        check_option_names("movielens", "rating", {"on_error": "skip"}, {})
    with pytest.raises(ValueError, match="protocol 'rating' has no option 'thresh'"):
        check_option_names("movielens", "rating", {}, {"thresh": 3})
    with pytest.raises(ValueError, match="synthetic generator has no option 'layout'"):
        check_option_names("synthetic", "click-log", {"layout": "100k"}, {})
    with pytest.raises(ValueError, match="unknown log source 'moviellens'"):
        check_option_names("moviellens", "rating", {}, {})
