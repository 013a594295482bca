"""cli.py: the one-line `error: ...` every script prints for a user's mistake, and the first line of an error."""
import tensorflow as tf

from cli import first_line, user_error


def test_user_error_prints_one_line_and_returns_2(capsys):
    assert user_error("no model file at m.keras") == 2
    assert capsys.readouterr().err == "error: no model file at m.keras\n"


def test_first_line_drops_tensorflows_function_prefix_and_the_rest():
    op_error = tf.errors.InvalidArgumentError(None, None, "{{function_node __inference_step_12}} bad frame x.png\n"
                                                          "\t [[{{node DecodePng}}]]")
    assert first_line(op_error) == "bad frame x.png"
    assert first_line(ValueError("--bs 3 does not divide\nsecond line")) == "--bs 3 does not divide"
    assert first_line(KeyboardInterrupt()) == "KeyboardInterrupt()"  # nothing to say: its name
