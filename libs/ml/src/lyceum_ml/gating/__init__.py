"""Learned gating (Tidal's phase 2, fixed): a small actor-critic watches generation and emits each step one
modulation m in [0, 1] on a conservative -> exploratory axis; the modulator turns m into sampling parameters
and the gated LM's gate signal. The policy is trained with PPO on a dense per-token reward while the LM stays
frozen, over batched episodes in the engine (KV caches), with the same observation at training and serving.

- `modulator`: m -> sampling parameters (and gate signal)
- `observation`: the 64-D observation of a row about to choose
- `reward`: the per-step reward and its components
- `policy`: the Beta actor-critic, saved and loaded as a registry artifact
- `control`: the engine controller for every mode (none, fixed, random, learned)
- `rollout`: batched episodes through an engine
- `ppo`: GAE, the clipped update, homeostasis and the Lagrangian variant
- `train`: the resumable PPO trainer and the ablation
"""
