"""Evaluation: the LLM judge (grader prompts, defensive parsing) and automatic metrics.

    from tinylang.evaluate.judge import grader_prompt, parse_judgement
"""
