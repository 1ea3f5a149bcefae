"""The networks: attention, transformers, ResNet blocks, the UNets and the autoencoder.

Module trees reproduce the official state dict keys exactly, so official checkpoints load with
strict=True. Taught in notebooks 04 and 05.
"""
