"""memdiag's reference engines: the five memory incidents, reproduced on a real database."""
