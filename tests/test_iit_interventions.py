"""Interchange interventions (seed 003): the hook swap against a hand-built intervened forward, the
causal models' counterfactual labels, the Fig. 1 toy's IIA before and after one IIT update."""

import pytest
import torch
from torch import nn

from trainers.causal_models import causal_model
from trainers.errors import TrainError
from trainers.iia import all_triples, interchange_intervention_accuracy
from trainers.interventions import Alignment, interchange_forward
from trainers.models import build_model
from trainers.small_cnn import SmallConvNet

AND_INPUTS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
UNITS = Alignment("hidden", (((0, 1),), ((1, 2),)))  # h1 is V1, h2 is V2


class Fig1Network(nn.Module):
    """h = [W1; W2] x, y = w h + b; logits [0, y] so that argmax predicts True iff y > 0."""

    def __init__(self, w1, w2, w, b) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(2, 2, bias=False), nn.Linear(2, 1)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.tensor([w1, w2]))
            self.out.weight.copy_(torch.tensor([w]))
            self.out.bias.fill_(b)

    def forward(self, x):
        y = self.out(self.hidden(x))
        return torch.cat([torch.zeros_like(y), y], 1)


def toy_iia(network: nn.Module) -> float:
    return interchange_intervention_accuracy(network, UNITS, causal_model("conjunction"), AND_INPUTS, AND_INPUTS.long(),
                                             all_triples(4, 2))


def test_fig1_iia_is_81_25_percent_before_and_100_after_the_papers_update():
    assert toy_iia(Fig1Network([0.45, 0.05], [0.05, 0.5], [1.0, 1.0], -1.0)) == 0.8125
    assert toy_iia(Fig1Network([0.5012, 0.05], [0.05, 0.5512], [1.0231, 1.0256], -0.9488)) == 1.0


def test_one_iit_update_of_the_fig1_network_reaches_100_percent_iia():
    # The update of the seed's Fig. 1c: base (F, T), source (T, F), V1 interchanged (the network says
    # False, the causal model True). Loss: cross entropy of the logits [0, y] against the
    # counterfactual label (binary cross entropy on y); one SGD step, learning rate 0.1.
    network = Fig1Network([0.45, 0.05], [0.05, 0.5], [1.0, 1.0], -1.0)
    base, source, variable = torch.tensor([1]), torch.tensor([2]), torch.tensor([0])
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    logits = interchange_forward(network, UNITS, AND_INPUTS[base], AND_INPUTS[source], variable)
    target = causal_model("conjunction").counterfactual(AND_INPUTS.long()[base], AND_INPUTS.long()[source], variable)
    assert logits.argmax(1).tolist() == [0] and target.tolist() == [1]
    nn.functional.cross_entropy(logits, target).backward()
    optimizer.step()
    # The seed's Fig. 1e, to its four decimals: the gradient reaches W1 through the source run, W2 through the base run.
    assert network.hidden.weight.flatten().tolist() == pytest.approx([0.5012, 0.05, 0.05, 0.5512], abs=1e-4)
    assert network.out.weight.flatten().tolist() == pytest.approx([1.0231, 1.0256], abs=1e-4)
    assert network.out.bias.item() == pytest.approx(-0.9488, abs=1e-4)
    assert toy_iia(network) == 1.0


# After the features: the small CNN's head is fc on the pooled vector, the grid CNN's a hidden layer then fc.
HEADS = {"small_cnn": lambda model, pooled: model.fc(pooled.flatten(1)), "grid_cnn": lambda model, pooled: model.fc(model.hidden(pooled))}


@pytest.mark.parametrize("arch", HEADS)
def test_quadrant_swap_equals_a_hand_built_intervened_forward(arch):
    torch.manual_seed(0)
    model = build_model(arch, 10).eval()
    base, source = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    sites, source_sites = torch.tensor([0, 3, 1]), torch.tensor([0, 2, 1])  # row 1 untyped
    alignment = Alignment("features.1", "quadrants")  # the first max-pool's output: (channels, 8, 8)
    with torch.no_grad():
        got = interchange_forward(model, alignment, base, source, sites, source_sites)
        head, tail = model.features[:2], model.features[2:]
        b, s = head(base), head(source)
        quadrant = lambda q: (slice(None), slice(4 * (q // 2), 4 * (q // 2) + 4), slice(4 * (q % 2), 4 * (q % 2) + 4))
        for row, (q, r) in enumerate(zip(sites.tolist(), source_sites.tolist())):
            b[row][quadrant(q)] = s[row][quadrant(r)]
        expected = HEADS[arch](model, tail(b))
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, model(base).detach(), atol=1e-3)


def test_pointer_value_counterfactuals_on_constructed_grids():
    pvr = causal_model("pointer_value")
    grids = torch.tensor([[2, 5, 6, 7], [4, 5, 6, 7], [9, 5, 6, 7], [3, 1, 1, 1]])
    assert pvr.output(grids).tolist() == [5, 6, 7, 1]
    source = torch.tensor([[8, 0, 0, 0], [0, 9, 9, 9], [1, 1, 1, 3], [3, 4, 4, 4]])
    # row 0: pointer 8 -> bottom-right 7; row 1: pointer 4 keeps, bottom-left 9; row 2: bottom-right 3; row 3: top-right 4
    assert pvr.counterfactual(grids, source, torch.tensor([0, 2, 3, 1])).tolist() == [7, 9, 3, 4]
    # typed: row 0 writes source's bottom-left 0 into its pointer (-> top-right 5); row 1 source's pointer 0 into its bottom-left
    typed = pvr.counterfactual(grids, source, torch.tensor([0, 2, 3, 1]), torch.tensor([2, 0, 0, 3]))
    assert typed.tolist() == [5, 0, 1, 4]  # row 2: source pointer 1 into bottom-right; row 3: source bottom-right 4 into top-right
    # swapping a variable the pointer does not read leaves the label (row 2's pointer 9 reads bottom-right 7)
    assert pvr.counterfactual(grids, source, torch.tensor([3, 3, 1, 2])).tolist() == [5, 6, 7, 1]


def test_a_module_not_in_the_model_and_an_unregistered_causal_model_are_one_line_errors():
    with pytest.raises(TrainError, match=r"alignment module 'layer9' is not in the model \(its top-level modules: features, fc\)"):
        interchange_forward(SmallConvNet(10), Alignment("layer9", "quadrants"), torch.zeros(1, 3, 8, 8),
                            torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))
    with pytest.raises(TrainError, match=r"causal model 'pvr' is not registered \(known: pointer_value, conjunction\)"):
        causal_model("pvr")
    with pytest.raises(TrainError, match="does not fit the output of hidden"):
        interchange_forward(Fig1Network([1, 0], [0, 1], [1, 1], 0), Alignment("hidden", (((1, 3),),)), AND_INPUTS, AND_INPUTS,
                            torch.zeros(4, dtype=torch.long))
    with pytest.raises(TrainError, match="must all have one shape"):
        interchange_forward(Fig1Network([1, 0], [0, 1], [1, 1], 0), Alignment("hidden", (((0, 1),), ((0, 2),))), AND_INPUTS,
                            AND_INPUTS, torch.zeros(4, dtype=torch.long))
    with pytest.raises(TrainError, match=r"alignment at hidden has 2 sites but the causal model has 4 variables"):
        interchange_intervention_accuracy(Fig1Network([1, 0], [0, 1], [1, 1], 0), UNITS, causal_model("pointer_value"),
                                          AND_INPUTS, AND_INPUTS.long(), all_triples(4, 2))
