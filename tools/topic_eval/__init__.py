"""The labelled computer-science-topic set (built from real offline text) and the training of the shipped scorer."""
