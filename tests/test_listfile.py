"""List-file datasets (NUS-WIDE / COCO / MIRFlickr layout) on tiny fixtures made here."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hashbench.datasets import DataError, get_protocol, load_dataset, make_split

# Distinct images of the fixture: relative path -> how it is written.
RGB = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3) * 2
GREY = np.arange(4 * 7, dtype=np.uint8).reshape(4, 7) * 9
PALETTE = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30]], dtype=np.uint8)
PAL_INDEX = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
RGBA = np.dstack([RGB[:3, :3], np.full((3, 3), 7, np.uint8)])
FLAT = np.full((8, 8, 3), (200, 40, 90), dtype=np.uint8)  # a constant JPEG decodes to nearly itself
GREY16 = np.array([[0, 257, 65535], [32896, 514, 1000]], dtype=np.uint16)


def _write_images(root):
    (root / "images" / "a").mkdir(parents=True)
    (root / "images" / "b").mkdir(parents=True)
    (root / "other").mkdir()
    Image.fromarray(RGB, "RGB").save(root / "images/a/rgb.png")
    Image.fromarray(GREY, "L").save(root / "images/a/grey.png")
    pal = Image.fromarray(PAL_INDEX, "P")
    pal.putpalette(PALETTE.reshape(-1).tolist())
    pal.save(root / "images/b/pal.png")
    Image.fromarray(RGBA, "RGBA").save(root / "images/b/rgba.png")
    Image.fromarray(FLAT, "RGB").save(root / "images/b/flat.jpg", quality=95)
    Image.fromarray(GREY16).save(root / "other/grey16.png")
    Image.fromarray(RGB[:2, :2], "RGB").save(root / "other/q1.png")
    Image.fromarray(RGB[2:4, :2], "RGB").save(root / "other/q2.png")


PATHS = ["images/a/rgb.png", "images/a/grey.png", "images/b/pal.png", "images/b/rgba.png",
         "images/b/flat.jpg", "other/grey16.png", "other/q1.png", "other/q2.png"]
LABELS = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]],
                  dtype=np.uint8)
FILES = {"database.txt": [0, 1, 2, 3, 4, 5], "train.txt": [4, 0, 2], "test.txt": [6, 7]}


def _line(path, labels):
    return path + " " + " ".join(str(int(v)) for v in labels)


def _write_lists(root, files=FILES, paths=PATHS, labels=LABELS):
    for name, items in files.items():
        (root / name).write_text("\n".join(_line(paths[i], labels[i]) for i in items) + "\n")


@pytest.fixture
def listset(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    _write_images(root)
    _write_lists(root)
    return root


def _lines(root, name):
    return [ln.split() for ln in (root / name).read_text().splitlines() if ln.strip()]


def test_labels_and_splits_follow_the_files(listset):
    data = load_dataset("listfile", data_root=str(listset))
    assert data.name == "listfile" and data.multi_label
    assert data.labels.dtype == np.uint8 and data.labels.shape == (8, 3)
    # train ⊂ database: one row per distinct image
    assert len(data) == 8 and len(data.images) == 8
    for split, name in (("query", "test.txt"), ("database", "database.txt"), ("train", "train.txt")):
        rows = data.splits[split]
        expected = _lines(listset, name)
        assert [data.images.paths[r] for r in rows] == [t[0] for t in expected]
        assert data.labels[rows].tolist() == [[int(v) for v in t[1:]] for t in expected]
    assert set(data.splits["train"]) <= set(data.splits["database"])
    assert not set(data.splits["query"]) & set(data.splits["database"])
    # the fingerprint follows the lists' content, not only the labels
    again = load_dataset("listfile", data_root=str(listset))
    assert again.fingerprint == data.fingerprint != ""
    _write_lists(listset, files={"train.txt": [0, 4, 2]})
    assert load_dataset("listfile", data_root=str(listset)).fingerprint != data.fingerprint


def test_predefined_protocols_return_the_file_splits(listset):
    data = load_dataset("listfile", data_root=str(listset))
    proto = get_protocol("listfile")
    assert proto.predefined and proto.topk == 5000
    split = make_split(proto, data)
    for name in ("query", "database", "train"):
        assert np.array_equal(getattr(split, name), data.splits[name])
    for dataset in ("nus-wide-21", "coco", "mirflickr25k"):
        p = get_protocol(dataset)
        assert p.name == dataset and p.predefined and p.topk == 5000


def test_images_are_read_lazily_as_rgb(listset, monkeypatch):
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    data = load_dataset("listfile", data_root=str(listset))
    assert opened == []  # nothing decoded at load
    row = {p: i for i, p in enumerate(data.images.paths)}

    def img(path):
        out = data.images[row[path]]
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        return out

    assert np.array_equal(img("images/a/rgb.png"), RGB)
    assert np.array_equal(img("images/a/grey.png"), np.repeat(GREY[:, :, None], 3, axis=2))
    assert np.array_equal(img("images/b/pal.png"), PALETTE[PAL_INDEX])
    assert np.array_equal(img("images/b/rgba.png"), RGBA[:, :, :3])
    assert np.abs(img("images/b/flat.jpg").astype(int) - FLAT).max() <= 3
    g16 = img("other/grey16.png")
    assert np.array_equal(g16[:, :, 0], np.array([[0, 1, 255], [128, 2, 4]])) and (g16 == g16[:, :, :1]).all()
    assert len(opened) == 6
    sub = data.images[data.splits["query"]]
    assert len(sub) == 2 and np.array_equal(sub[1], RGB[2:4, :2])
    assert np.array_equal(data.images[-1], data.images[len(data) - 1])


def test_image_root_and_absolute_paths(tmp_path, listset):
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in FILES:
        (lists / name).write_text((listset / name).read_text())
    with pytest.raises(DataError, match=r"8 of 8 listed images do not exist under .*lists.*image_root"):
        load_dataset("listfile", data_root=str(lists))
    data = load_dataset("listfile", data_root=str(lists), image_root=str(listset))
    assert np.array_equal(data.images[data.splits["query"][0]], RGB[:2, :2])
    absolute = [str(listset / p) for p in PATHS]
    _write_lists(lists, paths=absolute)
    data = load_dataset("listfile", data_root=str(lists))
    assert data.images.paths[data.splits["query"][1]] == absolute[7]
    assert np.array_equal(data.images[data.splits["query"][1]], RGB[2:4, :2])


def test_missing_root_and_files(tmp_path, listset):
    with pytest.raises(DataError, match=r"train\.txt, test\.txt and database\.txt"):
        load_dataset("listfile")
    with pytest.raises(DataError, match=r"is not a folder"):
        load_dataset("listfile", data_root=str(tmp_path / "nope"))
    (listset / "database.txt").unlink()
    (listset / "test.txt").unlink()
    with pytest.raises(DataError, match=r"lacks test\.txt, database\.txt"):
        load_dataset("listfile", data_root=str(listset))


@pytest.mark.parametrize("name, hint", [("nus-wide-21", "21 labels per line.*nuswide_21"),
                                        ("coco", "80 labels per line.*COCO 2014"),
                                        ("mirflickr25k", "24 or 38 labels per line.*mirflickr")])
def test_presets_without_data_explain_where_to_get_it(name, hint):
    with pytest.raises(DataError, match=r"(?s)not redistributable.*" + hint):
        load_dataset(name)


def test_wrong_number_of_labels_on_a_line(listset):
    lines = (listset / "train.txt").read_text().splitlines()
    lines[1] = lines[1] + " 1"
    (listset / "train.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train\.txt:2: 4 labels, but line 1 has 3"):
        load_dataset("listfile", data_root=str(listset))


@pytest.mark.parametrize("bad", ["2", "-1", "1.0", "x", "é"])
def test_labels_must_be_0_or_1(listset, bad):
    (listset / "test.txt").write_text("other/q1.png 1 0 0\n\nother/q2.png 0 %s 1\n" % bad)
    with pytest.raises(DataError, match=r"test\.txt:3: label '%s' in label column 2 is not 0 or 1" % bad):
        load_dataset("listfile", data_root=str(listset))


def test_inconsistent_label_counts_across_files(listset):
    _write_lists(listset, files={"test.txt": [6, 7]}, labels=np.hstack([LABELS, LABELS[:, :1]]))
    with pytest.raises(DataError, match=r"inconsistent label counts across list files "
                                        r"\(test\.txt has 4, database\.txt has 3, train\.txt has 3 labels"):
        load_dataset("listfile", data_root=str(listset))


def test_missing_images_are_reported_with_their_line(listset):
    (listset / "images/b/pal.png").unlink()
    with pytest.raises(DataError, match=r"1 of 8 listed images do not exist .*images/b/pal\.png \(database\.txt:3\)"):
        load_dataset("listfile", data_root=str(listset))
    data = load_dataset("listfile", data_root=str(listset), check_images=False)
    with pytest.raises(DataError, match=r"pal\.png does not exist"):
        data.images[data.images.paths.index("images/b/pal.png")]


def test_only_the_first_missing_images_are_listed(listset):
    paths = [f"gone/{i}.png" for i in range(8)]
    _write_lists(listset, paths=paths)
    with pytest.raises(DataError, match=r"8 of 8 listed images") as err:
        load_dataset("listfile", data_root=str(listset))
    assert str(err.value).count("gone/") == 5


def test_same_image_with_different_labels_is_an_error(listset):
    (listset / "train.txt").write_text(_line(PATHS[2], [0, 0, 1]) + "\n")
    with pytest.raises(DataError, match=r"'images/b/pal\.png' has different labels at .*train\.txt:1 and at "
                                        r".*database\.txt:3"):
        load_dataset("listfile", data_root=str(listset))


def test_repeated_paths_are_kept_with_a_warning(listset):
    (listset / "train.txt").write_text("".join(_line(PATHS[i], LABELS[i]) + "\n" for i in (0, 1, 0)))
    with pytest.warns(UserWarning, match=r"train\.txt lists 1 image path\(s\) more than once"):
        data = load_dataset("listfile", data_root=str(listset))
    train = data.splits["train"]
    assert len(train) == 3 and train[0] == train[2] != train[1]
    # "./x" and "x" name the same file
    (listset / "train.txt").write_text(_line("./" + PATHS[0], LABELS[0]) + "\n")
    data = load_dataset("listfile", data_root=str(listset))
    assert len(data) == 8 and data.splits["train"][0] == data.splits["database"][0]


def test_empty_and_unreadable_list_files(listset):
    (listset / "train.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"train\.txt lists no images"):
        load_dataset("listfile", data_root=str(listset))
    (listset / "train.txt").write_bytes(b"images/a/rgb.png \xff 0 0\n")
    with pytest.raises(DataError, match=r"train\.txt is not UTF-8"):
        load_dataset("listfile", data_root=str(listset))
    (listset / "train.txt").write_text("images/a/rgb.png\n")
    with pytest.raises(DataError, match=r"train\.txt:1: no labels after the image path"):
        load_dataset("listfile", data_root=str(listset))


def test_corrupt_image_fails_when_read(listset):
    (listset / "images/b/flat.jpg").write_bytes(b"not a jpeg")
    data = load_dataset("listfile", data_root=str(listset))
    with pytest.raises(DataError, match=r"cannot decode image .*flat\.jpg"):
        data.images[data.images.paths.index("images/b/flat.jpg")]


def _preset_set(root, n_labels, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((len(PATHS), n_labels)) < 0.3).astype(np.uint8)
    _write_lists(root, labels=labels)
    return labels


@pytest.mark.parametrize("name, good, bad", [("nus-wide-21", [21], 20), ("coco", [80], 81),
                                             ("mirflickr25k", [24, 38], 25)])
def test_presets_check_the_label_count(listset, name, good, bad):
    for count in good:
        labels = _preset_set(listset, count)
        data = load_dataset(name, data_root=str(listset))
        assert data.name == name and data.labels.shape == (8, count)
        q = make_split(get_protocol(name), data).query
        assert np.array_equal(data.labels[q], labels[FILES["test.txt"]])
    _preset_set(listset, bad)
    with pytest.raises(DataError, match=rf"{name} expects .*labels per line, the list files in .* have {bad}"):
        load_dataset(name, data_root=str(listset))


def test_queries_listed_in_the_database_are_refused_unless_allowed(listset):
    """A database.txt that also lists every query: each query would find itself at distance 0."""
    _write_lists(listset, files={"database.txt": [0, 1, 2, 3, 4, 5, 6, 7]})
    data = load_dataset("listfile", data_root=str(listset))
    with pytest.raises(DataError) as err:
        make_split(get_protocol("listfile"), data)
    assert str(err.value) == (
        "2 of 2 queries are also in the database and 0 in the training set (same image path in test.txt and "
        "database.txt): each query in the database would find itself at distance 0. Fix the list files, or "
        "pass allow_query_overlap=True (--allow-query-overlap) to evaluate anyway")
    split = make_split(get_protocol("listfile"), data, allow_query_overlap=True)
    assert split.overlap == {"query_in_database": 2, "query_in_train": 0}
    assert np.array_equal(split.database, data.splits["database"])


def test_a_query_path_spelled_differently_in_train_txt_is_the_same_image(listset):
    _write_lists(listset, files={"train.txt": [4, 0, 2]})
    (listset / "train.txt").write_text((listset / "train.txt").read_text() + "./" + _line(PATHS[7], LABELS[7]) + "\n")
    data = load_dataset("listfile", data_root=str(listset))
    with pytest.raises(DataError, match=r"^0 of 2 queries are also in the database and 1 in the training set "
                                        r"\(same image path in test\.txt and train\.txt\)"):
        make_split(get_protocol("listfile"), data)
    assert make_split(get_protocol("listfile"), data, allow_query_overlap=True).overlap == {
        "query_in_database": 0, "query_in_train": 1}


def test_the_standard_lists_have_no_overlap_and_a_content_digest(listset, monkeypatch):
    from hashbench.datasets import split_digest

    data = load_dataset("listfile", data_root=str(listset))
    split = make_split(get_protocol("listfile"), data)
    assert split.overlap == {"query_in_database": 0, "query_in_train": 0}  # train ⊂ database is no overlap
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    digest = split_digest(split, data)
    assert opened == []  # paths as the lists give them, no image decoded
    # the same lists and images in another folder: the same split (a digest never depends on where files sit)
    import shutil

    moved = shutil.copytree(listset, listset.parent / "moved")
    elsewhere = load_dataset("listfile", data_root=str(moved))
    assert split_digest(make_split(get_protocol("listfile"), elsewhere), elsewhere) == digest
    # same sizes, same labels line by line, other images (two paths swapped): the same indices, another digest
    _write_lists(listset, paths=[PATHS[1], PATHS[0]] + PATHS[2:])
    other = load_dataset("listfile", data_root=str(listset))
    other_split = make_split(get_protocol("listfile"), other)
    assert other.labels.tolist() == data.labels.tolist()
    assert all(np.array_equal(getattr(other_split, k), getattr(split, k)) for k in ("query", "database", "train"))
    assert split_digest(other_split, other) != digest


# ---------------------------------------------------------------- one image, however its path is spelled


def test_a_query_listed_in_the_database_by_its_absolute_path_is_overlap(listset):
    """database.txt names a query as /…/set/other/q1.png, test.txt as other/q1.png: one image, one row,
    so the query cannot silently find itself at distance 0."""
    absolute = [str(listset / p) for p in PATHS]
    (listset / "database.txt").write_text((listset / "database.txt").read_text() + _line(absolute[6], LABELS[6]) + "\n")
    data = load_dataset("listfile", data_root=str(listset))
    assert len(data) == 8  # not 9: the two spellings are one row
    query, database = data.splits["query"], data.splits["database"]
    assert query[0] == database[6] and data.images.paths[query[0]] == absolute[6]  # the first list's spelling
    with pytest.raises(DataError) as err:
        make_split(get_protocol("listfile"), data)
    assert str(err.value).startswith("1 of 2 queries are also in the database and 0 in the training set "
                                     "(same image path in test.txt and database.txt)")
    split = make_split(get_protocol("listfile"), data, allow_query_overlap=True)
    assert split.overlap == {"query_in_database": 1, "query_in_train": 0}
    assert np.array_equal(data.images[query[0]], RGB[:2, :2])


def test_spellings_resolve_against_the_image_root_not_the_list_folder(tmp_path, listset, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    _write_lists(lists)
    spelled = {6: str(listset / PATHS[6]), 7: "../set/./" + PATHS[7]}  # absolute; relative through ".."
    (lists / "database.txt").write_text((lists / "database.txt").read_text()
                                        + "".join(_line(p, LABELS[i]) + "\n" for i, p in spelled.items()))
    monkeypatch.chdir(tmp_path)  # a relative image root is resolved once, at load
    data = load_dataset("listfile", data_root="lists", image_root="set")
    assert len(data) == 8
    assert list(data.splits["query"]) == list(data.splits["database"][6:])
    split = make_split(get_protocol("listfile"), data, allow_query_overlap=True)
    assert split.overlap == {"query_in_database": 2, "query_in_train": 0}
    # "../set/other/q2.png" relative to the image root is its own file "other/q2.png" of that root
    assert data.images.paths[data.splits["query"][1]] == "../set/" + PATHS[7]
    assert np.array_equal(data.images[data.splits["query"][1]], RGB[2:4, :2])


def test_an_absolute_spelling_of_a_database_image_in_train_txt_changes_neither_rows_nor_digest(listset):
    from hashbench.datasets import split_digest

    data = load_dataset("listfile", data_root=str(listset))
    split = make_split(get_protocol("listfile"), data)
    (listset / "train.txt").write_text("".join(_line(str(listset / PATHS[i]), LABELS[i]) + "\n"
                                               for i in FILES["train.txt"]))
    spelled = load_dataset("listfile", data_root=str(listset))
    assert spelled.images.paths == data.images.paths and spelled.labels.tolist() == data.labels.tolist()
    assert all(np.array_equal(spelled.splits[k], data.splits[k]) for k in ("query", "database", "train"))
    assert split_digest(make_split(get_protocol("listfile"), spelled), spelled) == split_digest(split, data)


def test_one_image_under_two_spellings_must_carry_one_label_set(listset):
    (listset / "train.txt").write_text(_line(str(listset / PATHS[2]), [0, 0, 1]) + "\n")
    with pytest.raises(DataError) as err:
        load_dataset("listfile", data_root=str(listset))
    assert str(err.value) == (f"{str(listset / PATHS[2])!r} has different labels at {listset / 'train.txt'}:1 and "
                              f"at {listset / 'database.txt'}:3 (as 'images/b/pal.png'); an image must carry one "
                              "label set")


def test_two_spellings_in_one_file_are_a_repeated_entry(listset):
    (listset / "train.txt").write_text("".join(_line(p, LABELS[0]) + "\n" for p in (PATHS[0], str(listset / PATHS[0]))))
    with pytest.warns(UserWarning, match=r"train\.txt lists 1 image path\(s\) more than once"):
        data = load_dataset("listfile", data_root=str(listset))
    assert len(data) == 8 and data.splits["train"].tolist() == [data.splits["database"][0]] * 2


def test_symbolic_links_are_not_resolved(listset):
    """As documented: identity is lexical, so a second name made by a link is a second item."""
    (listset / "alias").symlink_to(listset / "images", target_is_directory=True)
    (listset / "train.txt").write_text(_line("alias/a/rgb.png", LABELS[0]) + "\n")
    data = load_dataset("listfile", data_root=str(listset))
    assert len(data) == 9 and data.splits["train"][0] not in data.splits["database"]
