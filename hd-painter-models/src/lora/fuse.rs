//! Merging LoRA layers into a model's weights: `W += scale * alpha / rank * up @ down`, as PEFT's
//! `merge` (diffusers' `fuse_lora`) does, in f32 whatever the weights are stored in, and the
//! result stored back in the weights' dtype. Every layer is resolved and shape-checked before
//! any weight changes, so a LoRA that does not fit leaves the model as it was.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::Linear;
use burn::tensor::{Device, FloatDType, Tensor, TensorData};

use super::file::{Lora, LoraComponent, LoraLayer};
use crate::error::{ModelsError, Result, TensorMismatch};

/// The kind of layer a weight belongs to, which decides its layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// burn's `Linear`: `[in, out]`, the transpose of PyTorch's.
    Linear,
    /// burn's `Conv2d`: `[out, in, kh, kw]`, as PyTorch's.
    Conv,
}

/// A LoRA-able weight of a model: its burn path, kind and shape.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    kind: Kind,
    shape: Vec<usize>,
}

/// The linear and convolution weights of a module, by burn path (`a.b.weight`).
pub(crate) fn targets<M: Module>(module: &M) -> HashMap<String, Target> {
    let mut visitor = Targets::default();
    module.visit(&mut visitor);
    visitor.found
}

#[derive(Default)]
struct Targets {
    path: Vec<String>,
    containers: Vec<String>,
    found: HashMap<String, Target>,
}

impl ModuleVisitor for Targets {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.containers.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let kind = match (self.containers.last().map(String::as_str), self.path.last()) {
            (Some("Struct:Linear"), Some(w)) if w == "weight" => Kind::Linear,
            (Some("Struct:Conv2d"), Some(w)) if w == "weight" => Kind::Conv,
            _ => return,
        };
        let target = Target {
            kind,
            shape: param.lazy_shape().to_vec(),
        };
        self.found.insert(self.path.join("."), target);
    }
}

/// Which layers of `lora`'s `component` go into which weight (by burn path), after checking
/// that every layer names a weight (`resolve` maps the file's module name to a burn path) and
/// fits its shape. Layers that fit nothing are one [`ModelsError::Weights`] listing them all.
pub(crate) fn plan<'a>(
    lora: &'a Lora,
    component: LoraComponent,
    targets: &HashMap<String, Target>,
    resolve: impl Fn(&str) -> Option<String>,
) -> Result<Plan<'a>> {
    let (mut unexpected, mut mismatched) = (Vec::new(), Vec::new());
    let mut plan: Plan<'a> = HashMap::new();
    for layer in lora.layers.iter().filter(|l| l.component == component) {
        let Some((path, target)) =
            resolve(&layer.module).and_then(|path| targets.get(&path).map(|t| (path, t)))
        else {
            unexpected.push(layer.key.clone());
            continue;
        };
        match fits(layer, target) {
            // Two layers on one weight (a file naming it twice) add up, as merging both would.
            Ok(()) => plan
                .entry(path)
                .or_insert((target.kind, Vec::new()))
                .1
                .push(layer),
            Err(detail) => mismatched.push(TensorMismatch {
                key: layer.key.clone(),
                detail,
            }),
        }
    }
    if !unexpected.is_empty() || !mismatched.is_empty() {
        return Err(ModelsError::Weights {
            path: lora.path.clone(),
            missing: Vec::new(),
            unexpected,
            mismatched,
        });
    }
    Ok(plan)
}

/// The layers to merge into each weight, by burn path, with the weight's kind.
pub(crate) type Plan<'a> = HashMap<String, (Kind, Vec<&'a LoraLayer>)>;

/// Whether the layer's factors fit the weight: `up @ down` must have the weight's PyTorch
/// shape, `[out, in * kh * kw]` flattened.
fn fits(layer: &LoraLayer, target: &Target) -> std::result::Result<(), String> {
    let (down, up) = (&layer.down.shape, &layer.up.shape);
    let torch_shape: Vec<usize> = match target.kind {
        Kind::Linear => vec![target.shape[1], target.shape[0]],
        Kind::Conv => target.shape.clone(),
    };
    let inputs: usize = torch_shape[1..].iter().product();
    let down_inputs: usize = down[1..].iter().product();
    // A convolution's LoRA keeps its kernel in the down factor; a linear one may carry 1x1
    // convolution factors (kohya's for SD 1's 1x1 `proj_in`).
    let kernel_fits = match target.kind {
        Kind::Conv => {
            (down.len() == 2 && torch_shape[2..] == [1, 1]) || down[1..] == torch_shape[1..]
        }
        Kind::Linear => down.len() == 2 || down[2..] == [1, 1],
    };
    if up[0] == torch_shape[0] && down_inputs == inputs && kernel_fits {
        Ok(())
    } else {
        Err(format!(
            "down {down:?} and up {up:?} do not make the weight's {torch_shape:?}"
        ))
    }
}

/// `scale * alpha / rank * up @ down` in the weight's burn layout, `[rows, cols]` of the
/// flattened weight.
fn delta(layer: &LoraLayer, kind: Kind, scale: f32, device: &Device) -> Tensor<2> {
    let rank = layer.rank();
    let (out, inputs) = (layer.up.shape[0], layer.down.data.len() / rank);
    let matrix = |data: &[f32], shape: [usize; 2]| {
        Tensor::<2>::from_data(TensorData::new(data.to_vec(), shape), device)
    };
    // The scale goes on the small factor, not on the weight-sized product.
    let up = matrix(&layer.up.data, [out, rank]) * (scale * layer.alpha / rank as f32);
    let down = matrix(&layer.down.data, [rank, inputs]);
    match kind {
        Kind::Linear => product(down.transpose(), up.transpose()),
        Kind::Conv => product(up, down),
    }
}

/// `a @ b` as a linear layer's GEMM (`x W`): the native kernel where it runs, several times
/// burn's matmul for a LoRA's thin inner dimension (the whole fuse of a rank-64 LoRA over the
/// full-size UNet is mostly these products).
fn product(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let ([m, k], n) = (a.dims(), b.dims()[1]);
    let layer = Linear {
        weight: Param::from_tensor(b),
        bias: None,
    };
    crate::native::linear(&layer, a.reshape([1, m, k])).reshape([m, n])
}

/// Merges the planned layers at `scale` into the weights, one weight at a time (each delta is
/// made when its weight is reached), in f32, storing the sums in each weight's dtype.
pub(crate) fn apply<M: Module>(module: M, plan: Plan<'_>, scale: f32, device: &Device) -> M {
    let mut mapper = Adder {
        path: Vec::new(),
        plan,
        scale,
        device: device.clone(),
    };
    module.map(&mut mapper)
}

struct Adder<'a> {
    path: Vec<String>,
    plan: Plan<'a>,
    scale: f32,
    device: Device,
}

impl ModuleMapper for Adder<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((kind, layers)) = self.plan.remove(&self.path.join(".")) else {
            return param;
        };
        let (scale, device) = (self.scale, &self.device);
        param.map(|weight| {
            let (dims, dtype): ([usize; D], FloatDType) = (weight.dims(), weight.dtype().into());
            let sum = layers
                .iter()
                .fold(weight.cast(FloatDType::F32), |w, layer| {
                    w + delta(layer, kind, scale, device).reshape(dims)
                });
            sum.cast(dtype)
        })
    }
}
