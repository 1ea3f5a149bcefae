"""The golden conformance runner: reference cases (case.json + safetensors) run against minigen.

`cases.py` finds and loads cases and compares outputs; each other module registers the handlers
for one area of the stack (`maths.py`: scalings, schedules, denoisers, guiders, samplers).
"""
