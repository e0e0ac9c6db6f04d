"""Export and chat refuse folders that are not theirs with one line (no transformers traceback)."""

from pretrain import chat, export


def test_export_and_chat_name_a_missing_folder(tmp_path, capsys):
    assert export.main([str(tmp_path / "nope"), str(tmp_path / "model")]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert export.main([str(tmp_path / "empty"), str(tmp_path / "model")]) == 2
    assert "holds no complete checkpoint" in capsys.readouterr().err
    (tmp_path / "empty" / "step_0000010").mkdir()
    assert export.main([str(tmp_path / "empty" / "step_0000010"), str(tmp_path / "model")]) == 2
    assert "not a complete checkpoint (no COMPLETE.json" in capsys.readouterr().err
    assert chat.main([str(tmp_path / "nope")]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    assert chat.main([str(tmp_path / "empty")]) == 2
    assert "is not an exported model" in capsys.readouterr().err
