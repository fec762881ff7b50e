"""Cross-domain label mapping by class name, single- and multi-label, and the corrupted examples."""
import numpy as np
import pytest

from vitjax.data.multilabel import MultiLabelSource
from vitjax.data.sources import ArraySource
from vitjax.robustness import corruptions, inputs


def test_match_classes_names_what_is_missing():
    mapping, classes = inputs.match_classes(["cat", "dog", "fox"], ["dog", "owl", "cat"])
    np.testing.assert_array_equal(mapping, [1, -1, 0])
    assert classes == {"missing_in_source": ["fox"], "unknown_to_model": ["owl"]}
    with pytest.raises(ValueError, match="shares no class name"):
        inputs.match_classes(["cat"], ["owl"])


def test_single_label_records_of_unknown_classes_are_dropped():
    images = np.zeros((5, 4, 4, 3), np.uint8)
    first = ArraySource("a", images, [0, 1, 2, 0, 1])
    second = ArraySource("b", images[:2], [2, 1])
    mapping, _ = inputs.match_classes(["cat", "dog", "fox"], ["dog", "owl", "cat"])
    source = inputs.RelabeledSource([first, second], mapping)
    assert len(source) == 4  # dog, cat, dog from a; cat from b; the three owls are gone
    np.testing.assert_array_equal(source.labels(), [1, 0, 1, 0])
    assert [source[i]["label"] for i in range(4)] == [1, 0, 1, 0]
    assert source.describe(3) == "b[0]"


def test_multilabel_records_keep_their_known_labels():
    split = MultiLabelSource("m", ["x.png", "y.png"], [[0, 1], [0]])
    mapping, _ = inputs.match_classes(["cat", "dog"], ["owl", "dog"])
    source = inputs.RelabeledSource([split], mapping)
    assert len(source) == 2
    assert source[0]["labels"] == [1] and source[1]["labels"] == []


def test_corrupted_examples_are_seeded_per_example():
    rng = np.random.default_rng(0)
    examples = [{"image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "label": np.int32(i)}
                for i in range(3)]
    corrupted = inputs.CorruptedExamples(examples, "shot_noise", 3, seed=1)
    again = inputs.CorruptedExamples(examples, "shot_noise", 3, seed=1)
    for i in range(3):
        assert corrupted[i]["label"] == i
        np.testing.assert_array_equal(corrupted[i]["image"], again[i]["image"])
        assert not np.array_equal(corrupted[i]["image"], examples[i]["image"])
    assert not np.array_equal(inputs.CorruptedExamples(examples, "shot_noise", 3, seed=2)[0]["image"],
                              corrupted[0]["image"])
    assert set(corruptions.CORRUPTIONS) >= {"shot_noise"}
