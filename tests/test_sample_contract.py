import pytest

from shards.errors import SampleError
from shards.sample import encode_sample
from tests.conftest import encoded_image, make_sample


def test_valid_sample_is_encoded_as_bytes():
    fields = encode_sample(make_sample(4))
    assert fields["cls"] == b"1"
    assert fields["json"] == b'{"index":4,"key":"sample00004"}'
    assert fields["jpg"][:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"__key__": "has.dot"}, "no dots"),
        ({"__key__": "a/b"}, "no slashes"),
        ({"__key__": "x" * 91}, "1-90 characters"),
        ({"pyd": b"\x80\x04"}, "not allowed"),
        ({"png": encoded_image(1, fmt="PNG")}, "exactly one image"),
        ({"cls": -3}, "non-negative decimal"),
        ({"cls": b"7a"}, "non-negative decimal"),
        ({"cls": 2.0}, "must be an int"),
        ({"json": b"{not json"}, "not valid JSON"),
        ({"json": [1, 2]}, "JSON object"),
        ({"jpg": b"plain text"}, "not encoded JPG"),
    ],
)
def test_contract_violations_are_refused(change, message):
    sample = {**make_sample(0), **change}
    with pytest.raises(SampleError, match=message):
        encode_sample(sample)


def test_missing_label_is_refused():
    sample = make_sample(0)
    del sample["cls"]
    with pytest.raises(SampleError, match="missing required field 'cls'"):
        encode_sample(sample)
