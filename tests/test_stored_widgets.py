"""A stored solution shows its progress bars as they ended, not as they began."""

import nbformat

from gptcourse.execution import WIDGET_STATE, WIDGET_VIEW, settle_widget_text


def _model(name, **state):
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


def test_a_finished_bars_plain_text_is_its_final_state():
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": {
        "box": _model("HBoxModel", children=["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"]),
        "left": _model("HTMLModel", value="training:\u2007100%"),
        "bar": _model("FloatProgressModel", value=300.0, max=300.0),
        "right": _model("HTMLModel", value="\u2007300/300\u2007[00:51&lt;00:00]"),
    }}}
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        WIDGET_VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0},
        "text/plain": "training:   0%|          | 0/300 [00:00<?, ?step/s]"})]
    nb.cells = [cell]
    settle_widget_text(nb)
    assert cell.outputs[0].data["text/plain"] == \
        "training: 100%|██████████| 300/300 [00:51<00:00]"


def test_outputs_without_saved_state_are_left_alone():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        WIDGET_VIEW: {"model_id": "gone"}, "text/plain": "as it was"})]
    nb.cells = [cell]
    settle_widget_text(nb)
    assert cell.outputs[0].data["text/plain"] == "as it was"
