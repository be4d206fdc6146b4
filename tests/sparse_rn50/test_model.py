"""ResNet variants: ResNet-50 shapes and parameter count, names of the original, init details."""

import numpy as np
import pytest

from state_of_sparsity.sparse_rn50 import model as model_lib


@pytest.fixture(scope="module")
def resnet50():
    return model_lib.create_model("resnet50")


def test_resnet50_has_25_6m_parameters_and_the_paper_layout(resnet50):
    trainable = sum(int(np.prod(w.shape)) for w in resnet50.trainable_weights)
    assert trainable == 25_557_032  # the canonical ResNet-50 v1 count
    assert resnet50.output_shape == (None, 1000)
    convs = [layer for layer in resnet50.layers if layer.__class__.__name__ == "Conv2D"]
    assert len(convs) == 53  # stem + 16 blocks x 3 + 4 projections
    assert all(not conv.use_bias for conv in convs)
    assert resnet50.get_layer("initial_conv").kernel.shape == (7, 7, 3, 64)
    # Stride sits on the 3x3 conv, with the original's fixed padding.
    assert resnet50.get_layer("bottleneck_2_block_group_projection_block_group2").strides == (2, 2)
    assert resnet50.get_layer("bottleneck_1_block_group_projection_block_group2").strides == (1, 1)
    assert resnet50.get_layer("bottleneck_2_block_group2_3_1").kernel.shape == (3, 3, 128, 128)


def test_resnet50_initialisation_and_in_model_normalisation(resnet50):
    for layer in resnet50.layers:
        if layer.name.startswith("bottleneck_3_") and layer.name.endswith("_bn"):
            assert np.all(layer.gamma.numpy() == 0)  # zero-init last BN gamma of each block
    fc = resnet50.get_layer("final_dense")
    assert abs(fc.kernel.numpy().std() - 0.01) < 0.001 and np.all(fc.bias.numpy() == 0)
    normalize = resnet50.get_layer("normalize")
    mean_pixel = np.array([0.485, 0.456, 0.406], np.float32) * 255
    out = normalize(np.broadcast_to(mean_pixel, (1, 2, 2, 3))).numpy()
    np.testing.assert_allclose(out, 0.0, atol=1e-5)


@pytest.mark.parametrize("name, trainable", [("resnet20", 272_474), ("resnet56", 855_770), ("resnet18", 11_689_512)])
def test_other_variants_have_their_reference_sizes(name, trainable):
    shape = (224, 224, 3) if name == "resnet18" else (32, 32, 3)
    model = model_lib.create_model(name, num_classes=1000 if name == "resnet18" else 10, input_shape=shape)
    count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # CIFAR ResNets here use 1x1 projection shortcuts (option B): a few thousand
    # more weights than He et al.'s zero-padding option A.
    assert count == trainable


def test_tiny_model_runs_on_fashion_mnist_shapes():
    model = model_lib.create_model("tiny", num_classes=10, input_shape=(28, 28, 1))
    assert model(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)
    assert model.get_layer("initial_conv") and model.get_layer("final_dense")


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"Expected one of \[.*'resnet50'.*\]. Received: name='resnet51'"):
        model_lib.create_model("resnet51")
