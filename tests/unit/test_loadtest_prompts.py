import json

import pytest

from ossctl.errors import UsageError
from ossctl.loadtest.prompts import CATEGORIES, builtin_prompts, load_prompts


def test_builtin_set_covers_the_five_categories_in_every_five():
    ps = builtin_prompts()
    assert {p.category for p in ps} == set(CATEGORIES)
    # users take prompts round-robin: any five consecutive requests see every category
    for i in range(len(ps)):
        assert {ps[(i + k) % len(ps)].category for k in range(5)} == set(CATEGORIES)


def test_load_jsonl(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"category": "code", "messages": [{"role": "user", "content": "hi"}],
                             "max_tokens": 12}) + "\n\n"
                 + json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "x"}]})
                 + "\n")
    ps = load_prompts(f)
    assert [(p.category, len(p.messages), p.max_tokens) for p in ps] == [("code", 1, 12), ("default", 2, None)]


@pytest.mark.parametrize("content,needle", [
    ("category,messages\ncode,hi\n", "line 1 is not JSON"),
    ('[1, 2]\n', "line 1 is not a JSON object"),
    ('{"category": "x", "messages": [{"role": "user", "content": "a"}]}\n{"category": "x"}\n', "line 2"),
    ('{"messages": [{"role": "robot", "content": "a"}]}\n', "messages"),
    ('{"messages": [{"role": "user", "content": "a"}], "max_tokens": 0}\n', "max_tokens"),
    ("\n\n", "has no prompts"),
])
def test_bad_prompt_files(tmp_path, content, needle):
    f = tmp_path / "p.jsonl"
    f.write_text(content)
    with pytest.raises(UsageError) as exc:
        load_prompts(f)
    assert needle in exc.value.message


def test_missing_prompt_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_prompts(tmp_path / "nope.jsonl")
